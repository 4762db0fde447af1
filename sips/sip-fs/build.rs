//! Generates the manifest and the BlockDevice and FileSystem bindings.

fn main() {
    sip_build::emit_manifest();
    sip_build::emit_bindings(&["block", "fs"]);
}
