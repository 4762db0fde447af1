//! The generator end to end: the image it makes holds exactly the file set (read back
//! with `ext4-view`, the crate the file-system SIP uses), and the same seed makes the same
//! image byte for byte.

use std::path::Path;
use std::process::Command;

use webfiles::FileSet;

fn generate(out: &Path, seed: u64) {
    let status = Command::new(env!("CARGO_BIN_EXE_webfiles-gen"))
        .args(["--seed", &seed.to_string(), "--dirs", "1", "--out"])
        .arg(out)
        .status()
        .expect("runs webfiles-gen");
    assert!(status.success());
}

#[test]
fn image_holds_the_file_set_and_is_reproducible() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (a, b) = (base.join("webfiles-a"), base.join("webfiles-b"));
    generate(&a, 5);
    generate(&b, 5);
    let image = std::fs::read(a.join("webfiles.img")).unwrap();
    assert!(
        image == std::fs::read(b.join("webfiles.img")).unwrap(),
        "the same seed made two different images"
    );
    let fs = ext4_view::Ext4::load(Box::new(image)).expect("a valid ext4 image");
    let set = FileSet { seed: 5, dirs: 1 };
    for file in set.files() {
        let data = fs.read(file.path().as_str()).unwrap();
        assert_eq!(data.len() as u64, file.size(), "{}", file.path());
        assert_eq!(
            crc32fast::hash(&data),
            set.checksum(file),
            "{}",
            file.path()
        );
    }
    let manifest = std::fs::read_to_string(a.join("webfiles.json")).unwrap();
    assert!(manifest.contains("\"/dir00000/class3_8\""), "{manifest}");
    assert!(manifest.contains(&format!("{}", set.checksum(set.files().last().unwrap()))));
}
