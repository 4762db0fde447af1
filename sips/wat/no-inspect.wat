;; Tries to read pid 1's accounting without the `inspect` power: the kernel must end it.
(module
  (import "cordon" "sip_info" (func $info (param i32 i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $info (i32.const 1) (i32.const 0) (i32.const 96)))
    (call $exit (i32.const 3))))
