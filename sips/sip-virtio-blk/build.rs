//! Generates the manifest (with the device resource) and the BlockDevice bindings.

fn main() {
    sip_build::emit_manifest();
    sip_build::emit_bindings(&["block"]);
}
