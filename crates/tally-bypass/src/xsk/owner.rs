//! Who owns each UMEM frame, as user space sees it: the check that keeps a bogus kernel
//! descriptor from handing us a frame we already hold or never gave away.
//!
//! Every frame is in exactly one state. Receive frames go `Fill` (on the fill ring or held
//! by the kernel) -> `Rx` (named by an rx descriptor, read by the current batch) -> back
//! to `Fill` when the batch is dropped and the frame is pushed on the fill ring. Transmit
//! frames go `TxFree` (on the pool's free list, or being written by a send) -> `TxKernel`
//! (on the tx ring) -> back to `TxFree` when the completion ring returns them.
//!
//! An rx descriptor is accepted only for a `Fill` frame, and a completion only for a
//! `TxKernel` frame; anything else (an rx descriptor naming a transmit frame, the same
//! frame twice in one batch, a completion for a frame that was not sent or was already
//! completed) is rejected and counted by the caller. So a batch never holds one frame
//! twice, an rx frame is never the transmit frame of a reply, and the fill ring never
//! receives a frame twice.
//!
//! What stays trusted: that the kernel no longer writes a `Fill` frame once an rx
//! descriptor names it, and no longer reads a `TxKernel` frame once a completion names it.
//! A descriptor that names the right kind of frame at the wrong time cannot be told apart
//! from a correct one.

/// The state of one frame (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Owner {
    /// Receive frame: on the fill ring or with the kernel.
    Fill,
    /// Receive frame: named by an rx descriptor of the current batch.
    Rx,
    /// Transmit frame: free (in the pool) or being written.
    TxFree,
    /// Transmit frame: on the tx ring, waiting for its completion.
    TxKernel,
}

/// One [`Owner`] per UMEM frame, indexed by frame number.
#[derive(Debug)]
pub(crate) struct FrameOwners {
    states: Box<[Owner]>,
}

impl FrameOwners {
    /// `frames` frames, all `TxFree` (receive frames become `Fill` with
    /// [`FrameOwners::give_to_fill`]).
    pub(crate) fn new(frames: u32) -> Self {
        Self {
            states: vec![Owner::TxFree; frames as usize].into_boxed_slice(),
        }
    }

    /// The state of frame `idx` (`None` past the end).
    pub(crate) fn get(&self, idx: u32) -> Option<Owner> {
        self.states.get(idx as usize).copied()
    }

    fn transition(&mut self, idx: u32, from: Owner, to: Owner) -> bool {
        match self.states.get_mut(idx as usize) {
            Some(s) if *s == from => {
                *s = to;
                true
            }
            _ => false,
        }
    }

    /// At start-up: a free frame becomes a receive frame on the fill ring.
    pub(crate) fn give_to_fill(&mut self, idx: u32) -> bool {
        self.transition(idx, Owner::TxFree, Owner::Fill)
    }

    /// An rx descriptor names frame `idx`: accepted only if the kernel had it.
    pub(crate) fn take_rx(&mut self, idx: u32) -> bool {
        self.transition(idx, Owner::Fill, Owner::Rx)
    }

    /// The batch holding frame `idx` is dropped: it goes back to the fill ring.
    pub(crate) fn return_rx(&mut self, idx: u32) -> bool {
        self.transition(idx, Owner::Rx, Owner::Fill)
    }

    /// A free transmit frame is pushed on the tx ring.
    pub(crate) fn send_tx(&mut self, idx: u32) -> bool {
        self.transition(idx, Owner::TxFree, Owner::TxKernel)
    }

    /// A completion names frame `idx`: accepted only if it was on the tx ring.
    pub(crate) fn complete_tx(&mut self, idx: u32) -> bool {
        self.transition(idx, Owner::TxKernel, Owner::TxFree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_descriptors_are_accepted_only_for_kernel_held_rx_frames() {
        let mut o = FrameOwners::new(4);
        assert!(o.give_to_fill(0));
        assert!(o.give_to_fill(1));
        assert!(!o.give_to_fill(1), "already a receive frame");
        assert!(o.take_rx(0));
        assert!(!o.take_rx(0), "the same frame twice in one batch");
        assert!(!o.take_rx(2), "a free transmit frame");
        assert!(o.send_tx(2));
        assert!(!o.take_rx(2), "a transmit frame on the tx ring");
        assert!(!o.take_rx(9), "past the end");
        assert!(o.return_rx(0));
        assert!(!o.return_rx(0), "returned twice");
        assert!(!o.return_rx(1), "never taken");
        assert!(
            o.take_rx(0),
            "back on the fill ring: the kernel may hand it again"
        );
        assert_eq!(o.get(0), Some(Owner::Rx));
        assert_eq!(o.get(4), None);
    }

    #[test]
    fn completions_are_accepted_only_for_frames_on_the_tx_ring() {
        let mut o = FrameOwners::new(4);
        assert!(o.give_to_fill(0));
        assert!(!o.complete_tx(3), "never sent");
        assert!(!o.complete_tx(0), "a receive frame");
        assert!(o.take_rx(0));
        assert!(!o.complete_tx(0), "a receive frame held by a batch");
        assert!(!o.send_tx(0), "a receive frame is never sent");
        assert!(o.send_tx(3));
        assert!(!o.send_tx(3), "already on the tx ring");
        assert!(o.complete_tx(3));
        assert!(!o.complete_tx(3), "completed twice");
        assert!(!o.complete_tx(u32::MAX), "past the end");
        assert_eq!(o.get(3), Some(Owner::TxFree));
    }
}
