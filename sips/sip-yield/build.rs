//! Generates the manifest from [package.metadata.cordon].

fn main() {
    sip_build::emit_manifest()
}
