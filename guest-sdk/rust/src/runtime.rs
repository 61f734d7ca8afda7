//! Glue between the generated bindings and an [`Agent`]: per-port IPC framing and the one agent
//! value of the instance. Used by [`export_agent!`](crate::export_agent); not part of the API.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::ipc::{BatchDecoder, BatchEncoder};
use crate::wit::sabot::agent::timers::Timer as WitTimer;
use crate::wit::sabot::agent::types::{AgentError as WitError, Output};
use crate::{Agent, AgentError, Config, Emitter};

/// Everything one instance keeps between calls.
pub struct Slot<A> {
    agent: Option<A>,
    inputs: HashMap<u32, BatchDecoder>,
    outputs: HashMap<u32, BatchEncoder>,
}

impl<A> Default for Slot<A> {
    fn default() -> Self {
        Slot {
            agent: None,
            inputs: HashMap::new(),
            outputs: HashMap::new(),
        }
    }
}

/// The `sabot-sdk` custom section: the SDK version that built this component, read by
/// `sabot inspect`.
#[used]
#[unsafe(link_section = "sabot-sdk")]
static SDK_VERSION: [u8; crate::VERSION.len()] = {
    let mut out = [0u8; crate::VERSION.len()];
    let src = crate::VERSION.as_bytes();
    let mut i = 0;
    while i < src.len() {
        out[i] = src[i];
        i += 1;
    }
    out
};

/// `handler.init`.
pub fn init<A: Agent>(slot: &RefCell<Slot<A>>, config: String) -> Result<(), WitError> {
    // Keeps the version section in the linked component: the linker only keeps what is reachable.
    core::hint::black_box(&SDK_VERSION);
    let agent = A::init(Config::new(config)).map_err(WitError::from)?;
    let mut slot = slot.borrow_mut();
    *slot = Slot::default();
    slot.agent = Some(agent);
    Ok(())
}

/// `handler.process`.
pub fn process<A: Agent>(
    slot: &RefCell<Slot<A>>,
    port: u32,
    bytes: Vec<u8>,
) -> Result<Vec<Output>, WitError> {
    let mut slot = slot.borrow_mut();
    let Slot {
        agent,
        inputs,
        outputs,
    } = &mut *slot;
    let agent = agent
        .as_mut()
        .ok_or_else(|| WitError::from(AgentError::internal("process called before init")))?;
    let decoder = inputs.entry(port).or_insert_with(|| {
        // SAFETY: the host encodes only batches it built or validated itself, with the SDK's
        // `BatchEncoder`; validating them again inside the sandbox would only cost time.
        unsafe { BatchDecoder::new_trusted() }
    });
    let batch = decoder.decode(bytes).map_err(|e| {
        WitError::from(AgentError::internal(format!(
            "the host sent a batch on port {port} that does not decode: {e}"
        )))
    })?;
    let mut out = Emitter {
        answering: batch.num_rows() == 0,
        ..Emitter::default()
    };
    let result = agent.process(port, batch, &mut out);
    finish(outputs, result, out)
}

/// `time-handler.on-watermark`.
pub fn on_watermark<A: Agent>(
    slot: &RefCell<Slot<A>>,
    watermark: i64,
) -> Result<Vec<Output>, WitError> {
    let mut slot = slot.borrow_mut();
    let Slot { agent, outputs, .. } = &mut *slot;
    let agent = agent
        .as_mut()
        .ok_or_else(|| WitError::from(AgentError::internal("on-watermark called before init")))?;
    let mut out = Emitter::default();
    let result = agent.on_watermark(watermark, &mut out);
    finish(outputs, result, out)
}

/// `time-handler.on-timers`.
pub fn on_timers<A: Agent>(
    slot: &RefCell<Slot<A>>,
    timers: Vec<WitTimer>,
) -> Result<Vec<Output>, WitError> {
    let mut slot = slot.borrow_mut();
    let Slot { agent, outputs, .. } = &mut *slot;
    let agent = agent
        .as_mut()
        .ok_or_else(|| WitError::from(AgentError::internal("on-timers called before init")))?;
    let mut out = Emitter::default();
    let result = agent.on_timers(
        timers.into_iter().map(crate::timers::from_wit).collect(),
        &mut out,
    );
    finish(outputs, result, out)
}

/// Ends a call: sends buffered timer registrations, encodes what the agent emitted.
fn finish(
    outputs: &mut HashMap<u32, BatchEncoder>,
    result: Result<(), AgentError>,
    out: Emitter,
) -> Result<Vec<Output>, WitError> {
    if let Err(e) = result {
        crate::timers::discard();
        return Err(WitError::from(e));
    }
    crate::timers::flush().map_err(WitError::from)?;
    out.batches
        .into_iter()
        .map(|(port, batch)| {
            let batch_bytes = outputs
                .entry(port)
                .or_default()
                .encode(&batch)
                .map_err(|e| {
                    WitError::from(AgentError::internal(format!(
                        "cannot encode an output batch for port {port}: {e}"
                    )))
                })?;
            Ok(Output {
                port,
                batch: batch_bytes,
            })
        })
        .collect()
}

/// Exports `$agent`, a type implementing [`Agent`](crate::Agent), as this component's agent.
///
/// Use it once per crate, at the top level of the `cdylib` that becomes the component.
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        const _: () = {
            struct __SabotComponent;

            ::std::thread_local! {
                static __SABOT_SLOT: ::core::cell::RefCell<$crate::runtime::Slot<$agent>> =
                    ::core::cell::RefCell::new(::core::default::Default::default());
            }

            impl $crate::wit::exports::sabot::agent::handler::Guest for __SabotComponent {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::wit::sabot::agent::types::AgentError>
                {
                    __SABOT_SLOT.with(|slot| $crate::runtime::init::<$agent>(slot, config))
                }

                fn process(
                    port: u32,
                    batch: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::wit::sabot::agent::types::Output>,
                    $crate::wit::sabot::agent::types::AgentError,
                > {
                    __SABOT_SLOT.with(|slot| $crate::runtime::process::<$agent>(slot, port, batch))
                }
            }

            impl $crate::wit::exports::sabot::agent::time_handler::Guest for __SabotComponent {
                fn on_watermark(
                    watermark: i64,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::wit::sabot::agent::types::Output>,
                    $crate::wit::sabot::agent::types::AgentError,
                > {
                    __SABOT_SLOT
                        .with(|slot| $crate::runtime::on_watermark::<$agent>(slot, watermark))
                }

                fn on_timers(
                    timers: ::std::vec::Vec<$crate::wit::sabot::agent::timers::Timer>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::wit::sabot::agent::types::Output>,
                    $crate::wit::sabot::agent::types::AgentError,
                > {
                    __SABOT_SLOT.with(|slot| $crate::runtime::on_timers::<$agent>(slot, timers))
                }
            }

            // Only a Wasm build exports the component's functions; natively (unit tests of an
            // agent, `cargo test --workspace`) the agent is plain Rust.
            #[cfg(target_arch = "wasm32")]
    $crate::wit::__export_agent_world!(__SabotComponent with_types_in $crate::wit);
        };
    };
}
