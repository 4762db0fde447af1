//! Generates the manifest and the Echo bindings.

fn main() {
    sip_build::emit_manifest();
    sip_build::emit_bindings(&["echo"]);
}
