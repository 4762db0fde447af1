;; Asks for the physical address of its own exchange-heap block without holding a device:
;; only drivers may learn physical addresses, so the kernel faults this SIP.
(module
  (import "cordon" "buf_alloc" (func $alloc (param i32) (result i32)))
  (import "cordon" "buf_dma" (func $dma (param i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (drop (call $dma (call $alloc (i32.const 64))))))
