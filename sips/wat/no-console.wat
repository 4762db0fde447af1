;; Tries to read what is typed without the `console` power: the kernel must end it.
(module
  (import "cordon" "console_read" (func $read (param i32 i32 i64) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $read (i32.const 0) (i32.const 64) (i64.const 0)))
    (call $exit (i32.const 3))))
