;; Exports a function besides its entry point, which would let something call into it:
;; the verifier must refuse it (closed interface).
(module
  (memory (export "memory") 1)
  (func (export "cordon_main"))
  (func (export "backdoor") (result i32) (i32.const 42)))
