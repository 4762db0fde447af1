;; Tries to run the kernel's micro-benchmark suite without the `bench` power: the kernel
;; must end it before anything runs.
(module
  (import "cordon" "bench" (func $bench (param i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "micro")
  (func (export "cordon_main")
    (drop (call $bench (i32.const 0) (i32.const 5)))
    (call $exit (i32.const 3))))
