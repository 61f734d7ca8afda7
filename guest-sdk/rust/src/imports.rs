//! The host functions the SDK calls, under their WIT names (`packed_*`: `packed-state`'s).
//!
//! In a Wasm build they are the component's imports. Built natively, the same agent can run
//! inside the host's own process (the built-in operators do, see [`native`](crate::native)):
//! then each call goes to the [`Services`](crate::native::Services) the host installed for the
//! call at hand.

#[cfg(target_arch = "wasm32")]
pub(crate) use crate::wit::sabot::agent::log::log;
#[cfg(target_arch = "wasm32")]
pub(crate) use crate::wit::sabot::agent::metrics::{counter_add, gauge_set, histogram_record};
#[cfg(target_arch = "wasm32")]
pub(crate) use crate::wit::sabot::agent::packed_state::{
    delete_many as packed_delete_many, get_many as packed_get_many, put_many as packed_put_many,
};
#[cfg(target_arch = "wasm32")]
pub(crate) use crate::wit::sabot::agent::state::scan;
#[cfg(target_arch = "wasm32")]
pub(crate) use crate::wit::sabot::agent::timers::{delete, register, watermark};

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::native::calls::*;
