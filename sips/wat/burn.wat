;; Burns processor time forever without calling the kernel and without a fuel budget,
;; under a CPU budget of 20 timer ticks that the kernel counts and enforces itself (in
;; ring 3 too, where the SIP's runtime, which meters fuel, is not trusted).
;;@ cpu-ticks = 20
(module
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (loop $again (br $again))))
