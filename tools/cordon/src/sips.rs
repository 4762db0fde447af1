//! The SIP modules this runner was built with, and the default system manifest.

use anyhow::{Context, bail};

include!(concat!(env!("OUT_DIR"), "/sips.rs"));

/// Names of every available SIP module.
pub fn names() -> Vec<&'static str> {
    SIPS.iter().map(|(name, _)| *name).collect()
}

/// The bytes of the module called `name`.
pub fn module(name: &str) -> anyhow::Result<Vec<u8>> {
    let Some((_, path)) = SIPS.iter().find(|(n, _)| *n == name) else {
        bail!("no SIP called `{name}`; available: {}", names().join(", "));
    };
    std::fs::read(path).with_context(|| format!("reading SIP module {path}"))
}
