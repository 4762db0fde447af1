;; Holds the `start` power (see systems/console-probes.toml). Starts `hello` with two
;; arguments, then with arguments whose last lacks its NUL byte: the kernel must end it
;; for that, and `hello` must have started with its arguments.
(module
  (import "cordon" "sip_start" (func $start (param i32 i32 i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello")
  (data (i32.const 16) "probing\00args\00")
  (func (export "cordon_main")
    (if (i32.le_s (call $start (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 13)) (i32.const 0))
      (then (call $exit (i32.const 4))))
    (drop (call $start (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 12)))
    (call $exit (i32.const 3))))
