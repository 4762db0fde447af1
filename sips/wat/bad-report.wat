;; Holds the `inspect` power (see systems/console-probes.toml). Reads the kernel's SIP
;; table into a buffer too small for it (it gets the start, and the whole length), then
;; asks for a table that does not exist: the kernel must end it for that.
(module
  (import "cordon" "report" (func $report (param i32 i32 i32) (result i32)))
  (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main") (local $len i32)
    (local.set $len (call $report (i32.const 0) (i32.const 0) (i32.const 16)))
    ;; The whole table is longer than the 16 bytes asked for.
    (if (i32.le_s (local.get $len) (i32.const 16)) (then (call $exit (i32.const 4))))
    ;; Its first 16 bytes: the header's start.
    (drop (call $write (i32.const 0) (i32.const 16)))
    (drop (call $report (i32.const 99) (i32.const 0) (i32.const 4096)))
    (call $exit (i32.const 3))))
