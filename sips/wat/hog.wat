;; Grows its memory in 1 MiB steps toward a limit the kernel cannot back: its manifest
;; allows 4096 pages (256 MiB, within the verifier's policy), more than the kernel has.
;;@ memory-pages = 4096
(module
  (import "cordon" "console_write" (func $write (param i32 i32) (result i32)))
  (import "cordon" "yield_now" (func $yield))
  (memory (export "memory") 1)
  (data (i32.const 0) "growing toward 256 MiB\n")
  (func (export "cordon_main")
    (drop (call $write (i32.const 0) (i32.const 23)))
    (loop $more
      (call $yield)
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))
