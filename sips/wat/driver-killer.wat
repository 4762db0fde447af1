;; Given the `kill` and `inspect` powers by its system manifest, waits until the disk
;; driver (pid 1) has made 40 kernel calls — it is serving reads by then — and kills it
;; in the middle of the run. Exits with the kill's status (0: done).
(module
  (import "cordon" "sip_info" (func $info (param i32 i32 i32) (result i32)))
  (import "cordon" "sip_kill" (func $kill (param i32) (result i32)))
  (import "cordon" "yield_now" (func $yield))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (block $ready
      (loop $wait
        ;; SipInfo (96 bytes): kernel calls are the u64 at offset 16.
        (drop (call $info (i32.const 1) (i32.const 0) (i32.const 96)))
        (br_if $ready (i64.ge_u (i64.load (i32.const 16)) (i64.const 40)))
        (call $yield)
        (br $wait)))
    (call $exit (call $kill (i32.const 1)))))
