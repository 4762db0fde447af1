//! Generates the manifest.

fn main() {
    sip_build::emit_manifest();
}
