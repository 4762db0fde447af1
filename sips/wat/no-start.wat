;; Tries to start a SIP without the `start` power: the kernel must end it (and start
;; nothing).
(module
  (import "cordon" "sip_start" (func $start (param i32 i32 i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello")
  (func (export "cordon_main")
    (drop (call $start (i32.const 0) (i32.const 5) (i32.const 0) (i32.const 0)))
    (call $exit (i32.const 3))))
