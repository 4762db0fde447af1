;; A driver granted the virtio-blk disk reads its status register (allowed), then a
;; register past the end of the device's I/O range: the kernel must fault it there.
;;@ resources = ["pci:1af4:1001"]
(module
  (import "cordon" "dev_read" (func $dev_read (param i32 i32 i32) (result i64)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $dev_read (i32.const 0) (i32.const 0x12) (i32.const 1)))
    (drop (call $dev_read (i32.const 0) (i32.const 0x1000) (i32.const 4)))
    (call $exit (i32.const 3))))
