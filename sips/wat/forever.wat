;; Loops forever without calling the kernel and without a fuel budget: only a kill can
;; stop it (the kernel's `sips` self-test does).
(module
  (memory (export "memory") 1)
  (func (export "cordon_main")
    (loop $again (br $again))))
