;; Asks for a kernel function that would load code: not in the closed ABI, so the
;; verifier must refuse the module before it runs (fixed-code invariant).
(module
  (import "cordon" "load_code" (func $load (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (call $load (i32.const 0) (i32.const 0))))
