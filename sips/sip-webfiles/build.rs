//! Generates the manifest and the FileSystem bindings.

fn main() {
    sip_build::emit_manifest();
    sip_build::emit_bindings(&["fs"]);
}
