;; Hands the kernel a buffer that lies outside its memory: the kernel call must fault this
;; SIP, not the kernel.
(module
  (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $write (i32.const 65000) (i32.const 4096)))))
