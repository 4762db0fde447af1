;; Tries to power the machine off without the `shutdown` power: the kernel must end it,
;; and the system runs on.
(module
  (import "cordon" "shutdown" (func $shutdown (param i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (call $shutdown (i32.const 0))
    (call $exit (i32.const 3))))
