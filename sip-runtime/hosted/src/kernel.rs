//! The ABI as system calls: the hosted runtime's implementation of `sip_runtime::Kernel`.
//!
//! Every method is one [`sys::call`] with pointers into the runtime's memory (the SIP's
//! linear memory lives on the runtime heap), following `cordon_abi::hosted`. The kernel
//! checks every pointer; a contract violation or misuse does not come back as an error
//! here: the kernel terminates the SIP itself, as the soft kernel's runtime would.

use alloc::string::String;
use cordon_abi as abi;
use sip_runtime::Kernel;

use crate::sys::{self, Pair};

/// Kernel calls made from this runtime, for the exit report.
#[derive(Default)]
pub struct SyscallKernel;

fn ptr(bytes: &[u8]) -> u64 {
    bytes.as_ptr() as u64
}

fn len(bytes: &[u8]) -> u64 {
    bytes.len() as u64
}

fn timeout(ticks: Option<u64>) -> u64 {
    ticks.map_or(u64::MAX, |t| t.min(i64::MAX as u64))
}

fn call(op: &abi::Op, args: [u64; 6]) -> Pair {
    sys::call(op.number, args)
}

fn status(op: &abi::Op, args: [u64; 6]) -> Result<i32, String> {
    Ok(call(op, args).first as i32)
}

impl Kernel for SyscallKernel {
    fn console_write(&mut self, bytes: &[u8]) {
        call(&abi::CONSOLE_WRITE, [ptr(bytes), len(bytes), 0, 0, 0, 0]);
    }

    fn yield_now(&mut self) {
        call(&abi::YIELD, [0; 6]);
    }

    fn ticks(&mut self) -> u64 {
        call(&abi::TICKS, [0; 6]).first
    }

    fn cycles(&mut self) -> u64 {
        call(&abi::CYCLES, [0; 6]).first
    }

    fn abi_version(&mut self) -> i32 {
        call(&abi::ABI_VERSION, [0; 6]).first as i32
    }

    /// The kernel stops a hosted SIP itself, at its next kernel entry or timer tick.
    fn kill_requested(&mut self) -> bool {
        false
    }

    fn chan_create(&mut self, contract: &str) -> Result<Result<(u32, u32), i32>, String> {
        let c = contract.as_bytes();
        let result = call(&abi::CHAN_CREATE, [ptr(c), len(c), 0, 0, 0, 0]);
        let status = result.first as i32;
        Ok(if status < 0 {
            Err(status)
        } else {
            Ok((result.second as u32, (result.second >> 32) as u32))
        })
    }

    fn chan_send(&mut self, ep: u32, message: &[u8]) -> Result<i32, String> {
        status(
            &abi::CHAN_SEND,
            [ep.into(), ptr(message), len(message), 0, 0, 0],
        )
    }

    fn chan_recv(&mut self, ep: u32, out: &mut [u8], ticks: Option<u64>) -> Result<i32, String> {
        status(
            &abi::CHAN_RECV,
            [ep.into(), ptr(out), len(out), timeout(ticks), 0, 0],
        )
    }

    fn chan_call(
        &mut self,
        ep: u32,
        message: &[u8],
        out: &mut [u8],
        ticks: Option<u64>,
    ) -> Result<i32, String> {
        status(
            &abi::CHAN_CALL,
            [
                ep.into(),
                ptr(message),
                len(message),
                ptr(out),
                len(out),
                timeout(ticks),
            ],
        )
    }

    fn chan_select(&mut self, eps: &[u32], ticks: Option<u64>) -> Result<i32, String> {
        status(
            &abi::CHAN_SELECT,
            [
                eps.as_ptr() as u64,
                eps.len() as u64,
                timeout(ticks),
                0,
                0,
                0,
            ],
        )
    }

    fn chan_close(&mut self, ep: u32) -> Result<i32, String> {
        status(&abi::CHAN_CLOSE, [ep.into(), 0, 0, 0, 0, 0])
    }

    fn chan_initial(
        &mut self,
        name: &str,
        contract: &str,
        importer: bool,
        wait: bool,
    ) -> Result<i32, String> {
        let (n, c) = (name.as_bytes(), contract.as_bytes());
        let role = u64::from(importer) | if wait { abi::INITIAL_WAIT as u64 } else { 0 };
        status(
            &abi::CHAN_INITIAL,
            [ptr(n), len(n), ptr(c), len(c), role, 0],
        )
    }

    fn chan_check(&mut self, ep: u32, contract: &str, importer: bool) -> Result<i32, String> {
        let c = contract.as_bytes();
        status(
            &abi::CHAN_CHECK,
            [ep.into(), ptr(c), len(c), importer.into(), 0, 0],
        )
    }

    fn buf_alloc(&mut self, size: u32) -> Result<i32, String> {
        status(&abi::BUF_ALLOC, [size.into(), 0, 0, 0, 0, 0])
    }

    fn buf_write(&mut self, buf: u32, offset: u32, data: &[u8]) -> Result<i32, String> {
        status(
            &abi::BUF_WRITE,
            [buf.into(), offset.into(), ptr(data), len(data), 0, 0],
        )
    }

    fn buf_read(&mut self, buf: u32, offset: u32, out: &mut [u8]) -> Result<i32, String> {
        status(
            &abi::BUF_READ,
            [buf.into(), offset.into(), ptr(out), len(out), 0, 0],
        )
    }

    fn buf_free(&mut self, buf: u32) -> Result<i32, String> {
        status(&abi::BUF_FREE, [buf.into(), 0, 0, 0, 0, 0])
    }

    fn buf_size(&mut self, buf: u32) -> Result<i32, String> {
        status(&abi::BUF_SIZE, [buf.into(), 0, 0, 0, 0, 0])
    }

    fn dev_read(&mut self, resource: u32, offset: u32, width: u32) -> Result<i64, String> {
        let args = [resource.into(), offset.into(), width.into(), 0, 0, 0];
        Ok(call(&abi::DEV_READ, args).first as i64)
    }

    fn dev_write(
        &mut self,
        resource: u32,
        offset: u32,
        width: u32,
        value: u32,
    ) -> Result<i32, String> {
        let args = [
            resource.into(),
            offset.into(),
            width.into(),
            value.into(),
            0,
            0,
        ];
        status(&abi::DEV_WRITE, args)
    }

    fn dev_wait(&mut self, resource: u32, ticks: Option<u64>) -> Result<i32, String> {
        status(
            &abi::DEV_WAIT,
            [resource.into(), timeout(ticks), 0, 0, 0, 0],
        )
    }

    fn buf_dma(&mut self, buf: u32) -> Result<i64, String> {
        Ok(call(&abi::BUF_DMA, [buf.into(), 0, 0, 0, 0, 0]).first as i64)
    }

    fn sip_start(&mut self, module: &str, args: &[u8]) -> Result<i32, String> {
        let m = module.as_bytes();
        status(
            &abi::SIP_START,
            [ptr(m), len(m), ptr(args), len(args), 0, 0],
        )
    }

    fn sip_kill(&mut self, pid: u32) -> Result<i32, String> {
        status(&abi::SIP_KILL, [pid.into(), 0, 0, 0, 0, 0])
    }

    fn sip_info(&mut self, pid: u32, out: &mut [u8]) -> Result<i32, String> {
        let args = [
            pid.into(),
            out.as_mut_ptr() as u64,
            out.len() as u64,
            0,
            0,
            0,
        ];
        status(&abi::SIP_INFO, args)
    }

    fn args(&mut self, out: &mut [u8]) -> Result<i32, String> {
        let args = [out.as_mut_ptr() as u64, out.len() as u64, 0, 0, 0, 0];
        status(&abi::ARGS, args)
    }

    fn console_read(&mut self, out: &mut [u8], ticks: Option<u64>) -> Result<i32, String> {
        let args = [
            out.as_mut_ptr() as u64,
            out.len() as u64,
            timeout(ticks),
            0,
            0,
            0,
        ];
        status(&abi::CONSOLE_READ, args)
    }

    fn report(&mut self, table: u32, out: &mut [u8]) -> Result<i32, String> {
        let args = [
            table.into(),
            out.as_mut_ptr() as u64,
            out.len() as u64,
            0,
            0,
            0,
        ];
        status(&abi::REPORT, args)
    }

    fn bench(&mut self, suite: &str) -> Result<i32, String> {
        let s = suite.as_bytes();
        status(&abi::BENCH, [ptr(s), len(s), 0, 0, 0, 0])
    }

    fn shutdown(&mut self, code: i32) -> Result<(), String> {
        // The kernel ends this SIP on the way back (it ends every SIP).
        call(&abi::SHUTDOWN, [code as u32 as u64, 0, 0, 0, 0, 0]);
        Ok(())
    }
}
