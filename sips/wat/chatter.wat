;; Writes 32 KiB to the console over and over, 16 times (512 KiB): past its console
;; budget the kernel must drop the rest, say so once, and let it finish.
(module
  (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (local $i i32)
    (memory.fill (i32.const 0) (i32.const 0x2e) (i32.const 32768))
    (loop $again
      (drop (call $write (i32.const 0) (i32.const 32768)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 16))))
    (call $exit (i32.const 0))))
