;; Tries to kill pid 1 without the `kill` power: the kernel must end it instead.
(module
  (import "cordon" "sip_kill" (func $kill (param i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $kill (i32.const 1)))
    (call $exit (i32.const 3))))
