;; Blocks forever: receives, with no timeout, on a channel whose other end it holds
;; itself, so no message and no close can ever come. Only a kill ends it (the kernel's
;; `sips` self-test shows a kill reaches a SIP blocked in the kernel).
(module
  (import "cordon" "chan_create" (func $create (param i32 i32 i32) (result i32)))
  (import "cordon" "chan_recv" (func $recv (param i32 i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Echo")
  (func (export "cordon_main")
    (drop (call $create (i32.const 0) (i32.const 4) (i32.const 16)))
    (drop (call $recv (i32.load (i32.const 16)) (i32.const 64) (i32.const 32768) (i64.const -1)))))
