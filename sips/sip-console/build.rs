//! Generates the manifest and the Console bindings.

fn main() {
    sip_build::emit_manifest();
    sip_build::emit_bindings(&["console"]);
}
