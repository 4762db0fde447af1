;; Divides by zero (Rust would panic first; wasm traps).
(module
  (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "dividing by zero\n")
  (func (export "cordon_main")
    (drop (call $write (i32.const 0) (i32.const 17)))
    (drop (i32.div_u (i32.const 1) (i32.const 0)))))
