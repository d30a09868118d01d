//! Simulated devices: threads joined in a ring by `std::sync::mpsc` channels, and the
//! one collective the chapter needs, a ring all-reduce (sum).
//!
//! Nothing here is a GPU. Each "device" is a thread of this process; a "link" is a
//! channel that moves a Rust value from one thread to the next. What the simulation
//! keeps from real hardware is the *pattern* of communication and its *volume*: every
//! [`RingLink::send`] counts the bytes of what it sends, so the bytes a layer
//! communicates are counted by the code and can be compared with the formulas NCCL's
//! documentation and the papers give ([`all_reduce_bytes_per_device`]).

use std::sync::mpsc::{Receiver, Sender, channel};

use crate::support::error::{AttnError, Result, nonzero, shape_err};

/// Something a simulated device can send: its size on a real link, in bytes.
pub trait Payload: Send {
    /// The bytes this message would occupy on a real link (its numbers, not Rust's
    /// bookkeeping around them).
    fn bytes(&self) -> u64;
}

impl Payload for Vec<f32> {
    fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }
}

/// One device's place in a ring of `devices`: a channel to the next device (`device + 1`,
/// wrapping around) and one from the previous, and the bytes sent so far.
#[derive(Debug)]
pub struct RingLink<T> {
    device: usize,
    devices: usize,
    to_next: Sender<T>,
    from_prev: Receiver<T>,
    bytes_sent: u64,
}

/// The links of a ring of `devices` simulated devices; link `r` belongs to device `r`.
///
/// Channels are unbounded, so a send never waits for the receiver: a device can send
/// its message and then receive, as every step of a ring algorithm does, without a
/// deadlock. A ring of one device sends to itself.
pub fn ring<T: Payload>(devices: usize) -> Result<Vec<RingLink<T>>> {
    nonzero("devices", devices)?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..devices).map(|_| channel()).unzip();
    // channel r carries what device r − 1 sends to device r
    let mut receivers: Vec<Option<Receiver<T>>> =
        receivers.into_iter().map(Some).collect();
    Ok((0..devices)
        .map(|r| RingLink {
            device: r,
            devices,
            to_next: senders[(r + 1) % devices].clone(),
            from_prev: receivers[r].take().expect("each receiver is taken once"),
            bytes_sent: 0,
        })
        .collect())
}

impl<T: Payload> RingLink<T> {
    /// This device's index, `0 .. devices`.
    pub fn device(&self) -> usize {
        self.device
    }

    /// Devices in the ring.
    pub fn devices(&self) -> usize {
        self.devices
    }

    /// Bytes this device has sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Sends `message` to the next device and counts its bytes.
    pub fn send(&mut self, message: T) -> Result<()> {
        let bytes = message.bytes();
        self.to_next.send(message).map_err(|_| self.hung_up("next"))?;
        self.bytes_sent += bytes;
        Ok(())
    }

    /// Waits for the previous device's next message.
    pub fn recv(&mut self) -> Result<T> {
        self.from_prev.recv().map_err(|_| self.hung_up("previous"))
    }

    /// The error when a neighbour's thread has ended (it failed, and dropped its link).
    fn hung_up(&self, which: &str) -> AttnError {
        AttnError::Config(format!(
            "simulated device {} of {}: the {which} device left the ring",
            self.device, self.devices
        ))
    }
}

/// The bytes each simulated device sent during one collective or one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Traffic {
    /// `bytes_sent[r]`: bytes device `r` sent.
    pub bytes_sent: Vec<u64>,
}

impl Traffic {
    /// The most any one device sent: what the slowest link carries.
    pub fn max_per_device(&self) -> u64 {
        self.bytes_sent.iter().copied().max().unwrap_or(0)
    }

    /// All devices together.
    pub fn total(&self) -> u64 {
        self.bytes_sent.iter().sum()
    }
}

/// The `devices` chunks a ring all-reduce cuts a buffer of `len` numbers into: chunk `c`
/// is `len·c/devices .. len·(c+1)/devices` (equal when `devices` divides `len`).
pub fn chunk_bounds(len: usize, devices: usize, c: usize) -> std::ops::Range<usize> {
    let at = |c: usize| (len as u128 * c as u128 / devices as u128) as usize;
    at(c)..at(c + 1)
}

// ANCHOR: all_reduce
/// Ring all-reduce (sum) of `buf`, run by every device of the ring at once: afterwards
/// each device's `buf` holds the element-wise sum of all devices' buffers, the same bits
/// on every device.
///
/// The buffer is cut into `D` chunks. **Reduce-scatter**, `D − 1` steps: at step `s`
/// device `r` sends chunk `r − s` to the next device and adds the chunk `r − s − 1` it
/// receives into its own; after the last step device `r` holds the finished sum of chunk
/// `r + 1`. **All-gather**, `D − 1` steps: the finished chunks travel around the ring
/// once more and are copied, not added. Each device sends `2·(D − 1)` chunks: `2·(D −
/// 1)/D` of the buffer, however many devices there are.
pub fn all_reduce_sum(link: &mut RingLink<Vec<f32>>, buf: &mut [f32]) -> Result<()> {
    let (r, d) = (link.device(), link.devices());
    let len = buf.len();
    let chunk = |c: usize| chunk_bounds(len, d, c % d);
    for s in 0..d - 1 {
        // reduce-scatter: pass a partial sum on, add the one that arrives
        link.send(buf[chunk(r + d - s)].to_vec())?;
        let incoming = link.recv()?;
        let mine = &mut buf[chunk(r + d - s - 1)];
        same_len(&incoming, mine.len())?;
        mine.iter_mut().zip(&incoming).for_each(|(x, y)| *x += y);
    }
    for s in 0..d - 1 {
        // all-gather: pass a finished chunk on, keep the one that arrives
        link.send(buf[chunk(r + 1 + d - s)].to_vec())?;
        let incoming = link.recv()?;
        let mine = &mut buf[chunk(r + d - s)];
        same_len(&incoming, mine.len())?;
        mine.copy_from_slice(&incoming);
    }
    Ok(())
}
// ANCHOR_END: all_reduce

/// An error unless a chunk from another device has the length of ours: the devices of
/// an all-reduce must reduce buffers of the same length.
fn same_len(incoming: &[f32], expected: usize) -> Result<()> {
    if incoming.len() != expected {
        return Err(shape_err(
            "all_reduce_sum chunk",
            &[Some(expected)],
            &[incoming.len()],
        ));
    }
    Ok(())
}

/// Runs [`all_reduce_sum`] on `buffers.len()` simulated devices, one thread each,
/// device `r` holding `buffers[r]`: afterwards every buffer holds the sum. Returns the
/// bytes each device sent. The buffers must have the same length.
pub fn all_reduce_on_threads(buffers: &mut [Vec<f32>]) -> Result<Traffic> {
    let links = ring::<Vec<f32>>(buffers.len())?;
    let results: Vec<Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (buffers.iter_mut().zip(links))
            .map(|(buf, mut link)| {
                scope.spawn(move || {
                    all_reduce_sum(&mut link, buf)?;
                    Ok(link.bytes_sent())
                })
            })
            .collect();
        handles.into_iter().map(crate::parallel::split_k::join).collect()
    });
    let bytes_sent = crate::parallel::tensor::first_error_first(results)?;
    Ok(Traffic { bytes_sent })
}

// ANCHOR: all_reduce_bytes
/// Bytes each device sends in a ring all-reduce of `elements` numbers of
/// `bytes_per_element` bytes over `devices` devices: `2·(D − 1)/D · elements · bytes`
/// (NCCL's "bus bandwidth" factor). Computed in `u128`, saturating; rounded down, exact
/// when `devices` divides `elements`, as it does for every buffer of `d_model` features
/// on 2, 4 or 8 devices.
pub fn all_reduce_bytes_per_device(
    elements: u128,
    devices: usize,
    bytes_per_element: usize,
) -> u128 {
    let d = devices.max(1) as u128;
    let sent = [d - 1, elements, bytes_per_element as u128]
        .iter()
        .fold(2u128, |acc, &n| acc.saturating_mul(n));
    sent / d
}
// ANCHOR_END: all_reduce_bytes
