;; Reads its arguments (printing the first), then hands `args` a buffer that lies outside
;; its memory: the kernel call must fault this SIP, not the kernel.
(module
  (import "cordon" "args" (func $args (param i32 i32) (result i32)))
  (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main") (local $len i32)
    (local.set $len (call $args (i32.const 0) (i32.const 64)))
    ;; The first argument, without its NUL byte.
    (drop (call $write (i32.const 0) (i32.sub (local.get $len) (i32.const 1))))
    (drop (call $args (i32.const 65530) (i32.const 100)))))
