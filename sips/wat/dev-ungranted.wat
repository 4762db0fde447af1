;; Reads a device register without having been granted any device: the kernel must fault
;; this SIP (a SIP reaches only the hardware its manifest declares).
(module
  (import "cordon" "dev_read" (func $dev_read (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $dev_read (i32.const 0) (i32.const 0) (i32.const 4)))))
