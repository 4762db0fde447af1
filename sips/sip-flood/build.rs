//! Generates the manifest and the bindings.

fn main() {
    sip_build::emit_manifest();
    sip_build::emit_bindings(&["directory", "echo"]);
}
