//! The input batch written straight into the guest's memory: one copy per batch.
//!
//! `handler.process` takes the batch as `list<u8>` (the `ipc` type of `wit/types.wit`). Through
//! the generated bindings that list must first exist as one contiguous host slice, so a batch
//! was copied twice: its Arrow buffers concatenated into a `Vec` (the IPC message), then that
//! `Vec` copied into the guest by the canonical ABI's lowering. [`IpcMessage`] lowers as the same
//! `list<u8>` but holds the message as the parts Arrow's stream encoder produced — the
//! flatbuffer header, then the batch's own buffers, shared and not copied, with their padding —
//! and writes each part once, in place, into the single buffer it asks the guest's
//! `cabi_realloc` for. The guest sees exactly the bytes it saw before.
//!
//! Lowering a custom type uses wasmtime's `ComponentType`/`Lower` traits, whose methods are public
//! for wasmtime's own derive macros (`wasmtime::component::__internal`); this module is the one
//! place that relies on them, and it does what wasmtime's lowering of `[u8]` does (the same
//! `realloc` call, the same pointer pair), with a copy per part instead of one for the whole.

use std::mem::MaybeUninit;

use arrow_buffer::Buffer;
use wasmtime::ValRaw;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower, TypedFunc};

use super::bindings::sabot::agent::types::{AgentError, Output};

/// `handler.process` with the batch lowered by [`IpcMessage`].
pub(super) type ProcessFunc = TypedFunc<(u32, IpcMessage), (Result<Vec<Output>, AgentError>,)>;

/// One batch's IPC message as the parts it is made of, lowered as `list<u8>`.
#[derive(Debug, Default)]
pub(super) struct IpcMessage {
    parts: Vec<Buffer>,
    len: usize,
}

impl IpcMessage {
    /// The message made of `parts`, in order.
    pub(super) fn new(parts: Vec<Buffer>) -> Self {
        let len = parts.iter().map(Buffer::len).sum();
        IpcMessage { parts, len }
    }

    /// Writes the parts end to end into `out`, which is exactly the message's length.
    fn write_to(&self, out: &mut [u8]) {
        let mut at = 0;
        for part in &self.parts {
            out[at..at + part.len()].copy_from_slice(part.as_slice());
            at += part.len();
        }
    }

    /// Allocates the list in the guest and writes the message into it; returns where it starts.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<usize> {
        let ptr = cx.realloc(0, 0, 1, self.len)?;
        // `realloc` has checked that `ptr..ptr + len` lies within the guest's memory.
        self.write_to(&mut cx.as_slice_mut()[ptr..ptr + self.len]);
        Ok(ptr)
    }
}

// SAFETY: the representation is `list<u8>`'s own (`[u8]`'s lowered form, ABI and type check),
// and `IpcMessage` only lowers, writing the pointer pair `[u8]` writes.
unsafe impl ComponentType for IpcMessage {
    type Lower = <[u8] as ComponentType>::Lower;

    const ABI: CanonicalAbiInfo = <[u8] as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: as wasmtime's lowering of `[u8]`: one `realloc` of the list's length at the element's
// alignment, the bytes written within the range `realloc` returned (checked in bounds by
// `LowerContext::realloc`), and the list's pointer and length stored as two 64-bit values (flat)
// or two little-endian 32-bit words (in memory).
unsafe impl Lower for IpcMessage {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        let ptr = self.store(cx)?;
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(self.len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let ptr = self.store(cx)?;
        *cx.get::<4>(offset) = u32::try_from(ptr)?.to_le_bytes();
        *cx.get::<4>(offset + 4) = u32::try_from(self.len)?.to_le_bytes();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_its_parts_end_to_end() {
        let message = IpcMessage::new(vec![
            Buffer::from(vec![1u8, 2, 3]),
            Buffer::from(Vec::<u8>::new()),
            Buffer::from(vec![4u8; 5]),
        ]);
        assert_eq!(message.len, 8);
        let mut out = vec![0u8; 8];
        message.write_to(&mut out);
        assert_eq!(out, [1, 2, 3, 4, 4, 4, 4, 4]);
    }
}
