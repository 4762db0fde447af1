;; The smallest useful SIP: one kernel call, then exit. The benchmark's measure of
;; create + start (the kernel times creation up to this first call).
(module
  (import "cordon" "abi_version" (func $version (result i32)))
  (import "cordon" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $version))
    (call $exit (i32.const 0))))
