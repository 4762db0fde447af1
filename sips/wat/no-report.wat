;; Tries to read the kernel's SIP table without the `inspect` power: the kernel must end it.
(module
  (import "cordon" "report" (func $report (param i32 i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $report (i32.const 0) (i32.const 0) (i32.const 4096)))
    (call $exit (i32.const 3))))
