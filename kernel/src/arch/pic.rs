//! Legacy interrupt controllers: the 8259 PIC pair (remapped to vectors 32–47) and the
//! 8254 PIT, which drives the scheduler tick on IRQ 0.

use pic8259::ChainedPics;
use x86_64::instructions::port::Port;

use super::irq::IrqMutex;
use super::trap::vector::IRQ_BASE;

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 100;
/// The PIT's interrupt line: the scheduler tick.
pub const TIMER_IRQ: u8 = 0;

const PIT_FREQUENCY_HZ: u64 = 1_193_182;
const PIT_COMMAND: u16 = 0x43;
const PIT_CHANNEL0: u16 = 0x40;

// SAFETY: IRQ_BASE (32) and IRQ_BASE + 8 do not overlap the CPU exception vectors.
static PICS: IrqMutex<ChainedPics> =
    IrqMutex::new(unsafe { ChainedPics::new(IRQ_BASE as u8, IRQ_BASE as u8 + 8) });

/// Remaps the PICs, unmasks only the timer and starts the PIT at [`TICK_HZ`].
pub fn init() {
    let mut pics = PICS.lock();
    // SAFETY: the PICs and PIT sit at their standard I/O ports on every PC and QEMU
    // machine; interrupts are disabled (the lock masks them) while they are programmed.
    unsafe {
        pics.initialize();
        // Only IRQ 0 (timer) on the primary; the cascade line stays unmasked for later.
        pics.write_masks(0b1111_1010, 0xff);
        let divisor = (PIT_FREQUENCY_HZ / TICK_HZ) as u16;
        Port::<u8>::new(PIT_COMMAND).write(0x34); // channel 0, lo/hi byte, mode 2
        Port::<u8>::new(PIT_CHANNEL0).write(divisor as u8);
        Port::<u8>::new(PIT_CHANNEL0).write((divisor >> 8) as u8);
    }
}

/// Masks every line of both PICs: the I/O APIC and the local APIC timer take over (the
/// PIT's channel 2 still times [`delay_us`] and [`one_shot_wait_us`]).
pub fn disable() {
    let mut pics = PICS.lock();
    // SAFETY: writing the interrupt mask registers only stops delivery; the PICs stay
    // remapped to 32–47, so a spurious interrupt from them is recognised as theirs.
    unsafe { pics.write_masks(0xff, 0xff) };
}

/// Masks (`true`) or unmasks one line, 0–15. The timer and the cascade are the kernel's:
/// requests for them are ignored.
pub fn set_masked(irq: u8, masked: bool) {
    if irq == 0 || irq == 2 || irq >= 16 {
        return;
    }
    let mut pics = PICS.lock();
    // SAFETY: reading and writing the interrupt mask registers changes only which lines
    // are delivered; the lock keeps the read-modify-write whole.
    unsafe {
        let [mut primary, mut secondary] = pics.read_masks();
        let (mask, bit) = if irq < 8 {
            (&mut primary, irq)
        } else {
            (&mut secondary, irq - 8)
        };
        if masked {
            *mask |= 1 << bit;
        } else {
            *mask &= !(1 << bit);
        }
        pics.write_masks(primary, secondary);
    }
}

/// Signals end of interrupt for `irq`. Returns false for a spurious IRQ 7/15, which must
/// not be acknowledged as a real one.
pub fn acknowledge(irq: u8) -> bool {
    let mut pics = PICS.lock();
    // SAFETY: reading the in-service register and sending EOI are side-effect-free for
    // other devices; the vector is one of the PICs' own.
    unsafe {
        if irq == 7 || irq == 15 {
            // OCW3: read ISR.
            let port = if irq == 7 { 0x20 } else { 0xa0 };
            Port::<u8>::new(port).write(0x0b);
            let isr: u8 = Port::<u8>::new(port).read();
            if isr & 0x80 == 0 {
                if irq == 15 {
                    // The primary still saw the cascade interrupt.
                    Port::<u8>::new(0x20).write(0x20);
                }
                return false;
            }
        }
        pics.notify_end_of_interrupt(IRQ_BASE as u8 + irq);
    }
    true
}

/// Runs the PIT's channel 2 once for `us` microseconds (at most 54 ms) and waits until it
/// ends: a window of known length for measuring other clocks. Channel 2 counts down once
/// (mode 0) and raises its output, read through port 0x61, at zero; unlike channel 0 it
/// cannot wrap unseen if this processor is held up. The speaker stays off.
pub fn one_shot_wait_us(us: u64) {
    let count = (us * PIT_FREQUENCY_HZ / 1_000_000).clamp(1, 0xffff) as u16;
    let _pics = PICS.lock();
    // SAFETY: port 0x61 bit 0 gates channel 2 and bit 1 drives the speaker (kept off);
    // programming channel 2 (command 0xb0: channel 2, low then high byte, mode 0) touches
    // nothing else the kernel uses. The lock keeps the sequence whole.
    unsafe {
        let mut control = Port::<u8>::new(0x61);
        let gate = (control.read() & !0x02) | 0x01;
        control.write(gate & !0x01);
        Port::<u8>::new(PIT_COMMAND).write(0xb0);
        Port::<u8>::new(0x42).write(count as u8);
        Port::<u8>::new(0x42).write((count >> 8) as u8);
        control.write(gate);
        while control.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
    }
}

/// Busy-waits at least `us` microseconds, in one-shot windows of the PIT's channel 2
/// ([`one_shot_wait_us`]): the delays the processor start-up protocol asks for, before
/// the scheduler's tick exists.
pub fn delay_us(us: u64) {
    const LONGEST_WINDOW_US: u64 = 50_000;
    let mut left = us;
    while left > 0 {
        let window = left.min(LONGEST_WINDOW_US);
        one_shot_wait_us(window);
        left -= window;
    }
}
