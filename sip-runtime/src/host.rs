// The kernel ABI as host functions, written once for both engines.
//
// Included (`include!`) by `interp` (wasmi) and `compiled` (wasmtime): their embedding APIs
// agree on `Linker::func_wrap`, `Caller` and `Memory::data_and_store_mut`, so each engine
// module supplies the names this file uses — `Caller`, `Linker`, `Error`, `State<K>` (with
// `kernel`, `abi_calls`, `scratch` and `memory`), `host_error` and `exit_error` — and the
// operations, their checks and their error reports stay in one place.

/// Entry of every kernel call: count it, tell the kernel (which may end the SIP here),
/// honour a pending kill.
fn enter<K: Kernel>(caller: &mut Caller<'_, State<K>>, op: &'static Op) -> Result<(), Error> {
    let state = caller.data_mut();
    state.abi_calls += 1;
    state
        .kernel
        .on_kernel_call(op)
        .map_err(|why| host_error(Stop::Injected(why)))?;
    if state.kernel.kill_requested() {
        return Err(host_error(Stop::Killed));
    }
    Ok(())
}

fn bad_call(why: String) -> Error {
    host_error(Stop::BadCall(why))
}

/// The SIP's linear memory and the store state, for a host function.
fn memory<'a, K: Kernel>(
    caller: &'a mut Caller<'_, State<K>>,
) -> Result<(&'a mut [u8], &'a mut State<K>), Error> {
    let Some(memory) = caller.data().memory else {
        return Err(bad_call("the SIP has no memory".into()));
    };
    Ok(memory.data_and_store_mut(caller))
}

/// `[ptr, ptr + len)` of linear memory, or a fault naming the call.
fn range(
    data_len: usize,
    ptr: i32,
    len: i32,
    what: &str,
) -> Result<core::ops::Range<usize>, Error> {
    let (start, count) = (ptr as u32 as usize, len as u32 as usize);
    match start.checked_add(count) {
        Some(end) if end <= data_len => Ok(start..end),
        _ => Err(bad_call(format!(
            "{what}: [{ptr:#x}, +{count}) reaches outside linear memory ({data_len} bytes)"
        ))),
    }
}

fn text(data: &[u8], range: core::ops::Range<usize>, what: &str) -> Result<String, Error> {
    core::str::from_utf8(&data[range])
        .map(String::from)
        .map_err(|_| bad_call(format!("{what}: name is not UTF-8")))
}

fn timeout(ticks: i64) -> Option<u64> {
    (ticks >= 0).then_some(ticks as u64)
}

/// Turns a kernel answer into the ABI result or a SIP fault.
fn answer(result: Result<i32, String>) -> Result<i32, Error> {
    result.map_err(bad_call)
}

/// The answer of an operation that may block: a kill that ended the wait ends the SIP now,
/// not at its next kernel call.
fn after_wait<K: Kernel>(kernel: &mut K, result: Result<i32, String>) -> Result<i32, Error> {
    if kernel.kill_requested() {
        return Err(host_error(Stop::Killed));
    }
    answer(result)
}

/// Registers the host functions of the channel and exchange-heap operations.
fn register_channels<K: Kernel + 'static>(
    linker: &mut Linker<State<K>>,
    op: &Op,
) -> Result<bool, Error> {
    use cordon_abi as abi;
    let module = abi::MODULE;
    match op.number {
        n if n == abi::CHAN_CREATE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 name: i32,
                 len: i32,
                 out: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CREATE)?;
                    let (data, state) = memory(&mut caller)?;
                    let name = text(
                        data,
                        range(data.len(), name, len, "chan_create")?,
                        "chan_create",
                    )?;
                    let out = range(data.len(), out, 8, "chan_create")?;
                    match state.kernel.chan_create(&name).map_err(bad_call)? {
                        Ok((exp, imp)) => {
                            data[out.start..out.start + 4].copy_from_slice(&exp.to_le_bytes());
                            data[out.start + 4..out.end].copy_from_slice(&imp.to_le_bytes());
                            Ok(abi::status::OK)
                        }
                        Err(status) => Ok(status),
                    }
                },
            )?;
        }
        n if n == abi::CHAN_SEND.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 ptr: i32,
                 len: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_SEND)?;
                    let (data, state) = memory(&mut caller)?;
                    let msg = range(data.len(), ptr, len, "chan_send")?;
                    answer(state.kernel.chan_send(ep as u32, &data[msg]))
                },
            )?;
        }
        n if n == abi::CHAN_RECV.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 ptr: i32,
                 cap: i32,
                 ticks: i64|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_RECV)?;
                    let (data, state) = memory(&mut caller)?;
                    let out = range(data.len(), ptr, cap, "chan_recv")?;
                    let result = state
                        .kernel
                        .chan_recv(ep as u32, &mut data[out], timeout(ticks));
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::CHAN_CALL.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 ptr: i32,
                 len: i32,
                 buf: i32,
                 cap: i32,
                 ticks: i64|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CALL)?;
                    let (data, state) = memory(&mut caller)?;
                    let msg = range(data.len(), ptr, len, "chan_call")?;
                    let out = range(data.len(), buf, cap, "chan_call")?;
                    state.scratch.clear();
                    state.scratch.extend_from_slice(&data[msg]);
                    let result = state.kernel.chan_call(
                        ep as u32,
                        &state.scratch,
                        &mut data[out],
                        timeout(ticks),
                    );
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::CHAN_SELECT.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ptr: i32,
                 count: i32,
                 ticks: i64|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_SELECT)?;
                    let (data, state) = memory(&mut caller)?;
                    if !(0..=abi::MAX_SELECT as i32).contains(&count) {
                        return Err(bad_call(format!(
                            "chan_select over {count} endpoints (1 to {})",
                            abi::MAX_SELECT
                        )));
                    }
                    let list = range(data.len(), ptr, count.saturating_mul(4), "chan_select")?;
                    let mut eps = [0u32; abi::MAX_SELECT];
                    for (i, chunk) in data[list].as_chunks::<4>().0.iter().enumerate() {
                        eps[i] = u32::from_le_bytes(*chunk);
                    }
                    let result = state
                        .kernel
                        .chan_select(&eps[..count as usize], timeout(ticks));
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::CHAN_CLOSE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, ep: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CLOSE)?;
                    answer(caller.data_mut().kernel.chan_close(ep as u32))
                },
            )?;
        }
        n if n == abi::CHAN_INITIAL.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 name: i32,
                 name_len: i32,
                 contract: i32,
                 contract_len: i32,
                 role: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_INITIAL)?;
                    let (data, state) = memory(&mut caller)?;
                    let name = text(
                        data,
                        range(data.len(), name, name_len, "chan_initial")?,
                        "chan_initial",
                    )?;
                    let contract = text(
                        data,
                        range(data.len(), contract, contract_len, "chan_initial")?,
                        "chan_initial",
                    )?;
                    if role & !(1 | abi::INITIAL_WAIT) != 0 {
                        return Err(bad_call(format!(
                            "chan_initial: role {role} (0 exporter, 1 importer, plus 2 to wait)"
                        )));
                    }
                    let result = state.kernel.chan_initial(
                        &name,
                        &contract,
                        role & 1 != 0,
                        role & abi::INITIAL_WAIT != 0,
                    );
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::CHAN_CHECK.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ep: i32,
                 contract: i32,
                 len: i32,
                 role: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CHAN_CHECK)?;
                    let (data, state) = memory(&mut caller)?;
                    let contract = text(
                        data,
                        range(data.len(), contract, len, "chan_check")?,
                        "chan_check",
                    )?;
                    answer(state.kernel.chan_check(ep as u32, &contract, role != 0))
                },
            )?;
        }
        n if n == abi::BUF_ALLOC.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, size: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_ALLOC)?;
                    if size < 0 {
                        return Err(bad_call(format!("buf_alloc({size})")));
                    }
                    answer(caller.data_mut().kernel.buf_alloc(size as u32))
                },
            )?;
        }
        n if n == abi::BUF_WRITE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 h: i32,
                 offset: i32,
                 ptr: i32,
                 len: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_WRITE)?;
                    let (data, state) = memory(&mut caller)?;
                    let from = range(data.len(), ptr, len, "buf_write")?;
                    answer(state.kernel.buf_write(h as u32, offset as u32, &data[from]))
                },
            )?;
        }
        n if n == abi::BUF_READ.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 h: i32,
                 offset: i32,
                 ptr: i32,
                 len: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_READ)?;
                    let (data, state) = memory(&mut caller)?;
                    let to = range(data.len(), ptr, len, "buf_read")?;
                    answer(
                        state
                            .kernel
                            .buf_read(h as u32, offset as u32, &mut data[to]),
                    )
                },
            )?;
        }
        n if n == abi::BUF_FREE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, h: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_FREE)?;
                    answer(caller.data_mut().kernel.buf_free(h as u32))
                },
            )?;
        }
        n if n == abi::BUF_SIZE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, h: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::BUF_SIZE)?;
                    answer(caller.data_mut().kernel.buf_size(h as u32))
                },
            )?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The driver operations: scalar arguments only, so no linear-memory checks.
fn register_devices<K: Kernel + 'static>(
    linker: &mut Linker<State<K>>,
    op: &Op,
) -> Result<bool, Error> {
    use cordon_abi as abi;
    let module = abi::MODULE;
    match op.number {
        n if n == abi::DEV_READ.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 res: i32,
                 offset: i32,
                 width: i32|
                 -> Result<i64, Error> {
                    enter(&mut caller, &abi::DEV_READ)?;
                    caller
                        .data_mut()
                        .kernel
                        .dev_read(res as u32, offset as u32, width as u32)
                        .map_err(bad_call)
                },
            )?;
        }
        n if n == abi::DEV_WRITE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 res: i32,
                 offset: i32,
                 width: i32,
                 value: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::DEV_WRITE)?;
                    answer(caller.data_mut().kernel.dev_write(
                        res as u32,
                        offset as u32,
                        width as u32,
                        value as u32,
                    ))
                },
            )?;
        }
        n if n == abi::DEV_WAIT.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, res: i32, ticks: i64| -> Result<i32, Error> {
                    enter(&mut caller, &abi::DEV_WAIT)?;
                    let kernel = &mut caller.data_mut().kernel;
                    let result = kernel.dev_wait(res as u32, timeout(ticks));
                    after_wait(kernel, result)
                },
            )?;
        }
        n if n == abi::BUF_DMA.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, h: i32| -> Result<i64, Error> {
                    enter(&mut caller, &abi::BUF_DMA)?;
                    caller.data_mut().kernel.buf_dma(h as u32).map_err(bad_call)
                },
            )?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Registers the host functions of the operations that control other SIPs.
fn register_control<K: Kernel + 'static>(
    linker: &mut Linker<State<K>>,
    op: &Op,
) -> Result<bool, Error> {
    use cordon_abi as abi;
    let module = abi::MODULE;
    match op.number {
        n if n == abi::SIP_START.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ptr: i32,
                 len: i32,
                 args: i32,
                 args_len: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::SIP_START)?;
                    let (data, state) = memory(&mut caller)?;
                    let name = text(data, range(data.len(), ptr, len, "sip_start")?, "sip_start")?;
                    let args = range(data.len(), args, args_len, "sip_start")?;
                    answer(state.kernel.sip_start(&name, &data[args]))
                },
            )?;
        }
        n if n == abi::ARGS.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, ptr: i32, cap: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::ARGS)?;
                    let (data, state) = memory(&mut caller)?;
                    let out = range(data.len(), ptr, cap, "args")?;
                    answer(state.kernel.args(&mut data[out]))
                },
            )?;
        }
        n if n == abi::SIP_KILL.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, pid: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::SIP_KILL)?;
                    answer(caller.data_mut().kernel.sip_kill(pid as u32))
                },
            )?;
        }
        n if n == abi::SIP_INFO.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 pid: i32,
                 ptr: i32,
                 cap: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::SIP_INFO)?;
                    let (data, state) = memory(&mut caller)?;
                    let out = range(data.len(), ptr, cap, "sip_info")?;
                    answer(state.kernel.sip_info(pid as u32, &mut data[out]))
                },
            )?;
        }
        n if n == abi::CONSOLE_READ.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 ptr: i32,
                 cap: i32,
                 ticks: i64|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::CONSOLE_READ)?;
                    let (data, state) = memory(&mut caller)?;
                    let out = range(data.len(), ptr, cap, "console_read")?;
                    let result = state.kernel.console_read(&mut data[out], timeout(ticks));
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::REPORT.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>,
                 table: i32,
                 ptr: i32,
                 cap: i32|
                 -> Result<i32, Error> {
                    enter(&mut caller, &abi::REPORT)?;
                    let (data, state) = memory(&mut caller)?;
                    let out = range(data.len(), ptr, cap, "report")?;
                    answer(state.kernel.report(table as u32, &mut data[out]))
                },
            )?;
        }
        n if n == abi::BENCH.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, ptr: i32, len: i32| -> Result<i32, Error> {
                    enter(&mut caller, &abi::BENCH)?;
                    let (data, state) = memory(&mut caller)?;
                    let suite = text(data, range(data.len(), ptr, len, "bench")?, "bench")?;
                    let result = state.kernel.bench(&suite);
                    after_wait(&mut state.kernel, result)
                },
            )?;
        }
        n if n == abi::SHUTDOWN.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, status: i32| -> Result<(), Error> {
                    enter(&mut caller, &abi::SHUTDOWN)?;
                    let kernel = &mut caller.data_mut().kernel;
                    kernel.shutdown(status).map_err(bad_call)?;
                    // The kernel ends every SIP, this one included.
                    Err(host_error(Stop::Killed))
                },
            )?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Registers the host function for `op`. Every operation of the ABI has exactly one arm;
/// an operation without one is a runtime bug caught by the tests.
fn register<K: Kernel + 'static>(linker: &mut Linker<State<K>>, op: &Op) -> Result<(), Error> {
    let module = cordon_abi::MODULE;
    match op.number {
        n if n == cordon_abi::EXIT.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, status: i32| -> Result<(), Error> {
                    enter(&mut caller, &cordon_abi::EXIT)?;
                    Err(exit_error(status))
                },
            )?;
        }
        n if n == cordon_abi::CONSOLE_WRITE.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>, ptr: i32, len: i32| -> Result<i32, Error> {
                    enter(&mut caller, &cordon_abi::CONSOLE_WRITE)?;
                    let (start, count) = (ptr as u32 as usize, len as u32 as usize);
                    let (data, state) = memory(&mut caller)?;
                    let Some(bytes) = start.checked_add(count).and_then(|end| data.get(start..end)) else {
                        return Err(bad_call(format!(
                            "console_write({ptr:#x}, {count}) reaches outside linear memory ({} bytes)",
                            data.len()
                        )));
                    };
                    state.kernel.console_write(bytes);
                    Ok(len)
                },
            )?;
        }
        n if n == cordon_abi::YIELD.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<(), Error> {
                    enter(&mut caller, &cordon_abi::YIELD)?;
                    caller.data_mut().kernel.yield_now();
                    Ok(())
                },
            )?;
        }
        n if n == cordon_abi::TICKS.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<i64, Error> {
                    enter(&mut caller, &cordon_abi::TICKS)?;
                    Ok(caller.data_mut().kernel.ticks() as i64)
                },
            )?;
        }
        n if n == cordon_abi::CYCLES.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<i64, Error> {
                    enter(&mut caller, &cordon_abi::CYCLES)?;
                    Ok(caller.data_mut().kernel.cycles() as i64)
                },
            )?;
        }
        n if n == cordon_abi::ABI_VERSION.number => {
            linker.func_wrap(
                module,
                op.name,
                |mut caller: Caller<'_, State<K>>| -> Result<i32, Error> {
                    enter(&mut caller, &cordon_abi::ABI_VERSION)?;
                    Ok(caller.data_mut().kernel.abi_version())
                },
            )?;
        }
        _ => {
            if !register_channels(linker, op)?
                && !register_devices(linker, op)?
                && !register_control(linker, op)?
            {
                unreachable!("ABI operation `{}` has no host function", op.name)
            }
        }
    }
    Ok(())
}
