//! The cost model: what one request costs the vault on EPYC hardware, next to AES-NI in the
//! kernel, from three inputs — the HV's host-side work per request (measured here,
//! `host_work`), the AES throughput of the vault's code and of OpenSSL's AES-NI code
//! (measured by `cargo xtask bench-aes` on this machine, a Zen 4 EPYC), and the cost of one
//! world switch (published figures, [`EXIT_COSTS`]).
//!
//! For a request of `n` bytes served in `c` VMRUNs, with `k` requests sharing each VMRUN
//! (a batch: the module serves up to 16 per VMRUN; the host work `h` is timed per request,
//! one request per comm block, so sharing a comm block's fixed part is not credited):
//!
//! ```text
//! t_aesni(n)   = n / B_openssl(n)
//! t_vault(n,k) = h(n) + c · e / k + n / B_vault(n)
//! ratio        = t_aesni / t_vault        (1.0: as fast as AES-NI in the kernel)
//! ```
//!
//! Assumptions, all of them:
//! - the crypto API's own work (request setup, scatterwalk, completion) is the same for the
//!   vault's driver and for `*-aesni`, and left out of both; so is `kernel_fpu_begin/end`,
//!   which both pay;
//! - `e` is the whole world switch: VMRUN, #VMEXIT and what the HV does around them (the
//!   trampoline, VMSAVE/VMLOAD, the EFER and VM_HSAVE_PA writes that turn SVM on and off
//!   per run — 4 WRMSR and 2 RDMSR, not in the published figures and not measured: they
//!   make the prediction optimistic);
//! - interrupt and NMI exits during a request are rare and left out;
//! - AES throughput at `n`: bench-aes's 4 KiB figure up to 4 KiB (so 512 B is credited
//!   4 KiB's per-byte speed: optimistic for both sides), its 64 KiB figure from 64 KiB, and
//!   linear in log2(n) between;
//! - `h(n)` for data on separate 4 KiB pages, out of place (dm-crypt writes): the costlier
//!   of the two placements measured;
//! - the host and bench-aes ran on a Zen 4 EPYC (a cloud VM of family 25 model 17), the
//!   generation of the EPYC 9334 the exit figures are from; the vault's AES code runs there
//!   at the speed it would in the vault (it is the same code; the vault adds no per-byte
//!   work besides its scatter-list walk, which bench-aes leaves out).
use serde::Serialize;

/// One published cost of a world switch.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ExitCost {
    /// Which platform it stands for.
    pub platform: &'static str,
    /// Nanoseconds per round trip.
    pub ns: f64,
    /// Where the figure comes from.
    pub source: &'static str,
}

/// EPYC 9334 base clock (AMD product page: 2.7 GHz), to turn the cycle figure into time.
pub const EPYC_9334_HZ: f64 = 2.7e9;

/// The world-switch costs the model uses.
pub const EXIT_COSTS: [ExitCost; 3] = [
    ExitCost {
        platform: "plain SVM, optimistic (1350 cycles)",
        ns: 1350.0 / EPYC_9334_HZ * 1e9,
        source: "KVM/SVM VMRUN-to-#VMEXIT round trip of 1344-1376 cycles (lkml, December 2020, as issue 12 and \
                 ../shared/FACTS.md quote it; the message itself was not located), at the EPYC 9334's 2.7 GHz",
    },
    ExitCost {
        platform: "plain SVM (1.25 us)",
        ns: 1250.0,
        source: "an exit through KVM from a normal guest on an EPYC 9334 (Zen 4): ~1.25 us (Misono et al., \
                 SIGMETRICS 2025, artifact TUM-DSE/CVM_eval benchmarks/vmexit, as issue 12 quotes it)",
    },
    ExitCost {
        platform: "SEV-ES (bound) and SNP (3.0 us)",
        ns: 3000.0,
        source: "an explicit VMGEXIT from an SNP guest on the same EPYC 9334: ~3.0 us (3.6 us through #VC); \
                 the vault exits by explicit VMGEXIT. No SEV-ES figure was published with it: the SNP one is \
                 used as the bound for SEV-ES (SNP adds RMP checks to the same exit), as issue 12 asks",
    },
];

/// Batch sizes the model is evaluated at (requests per VMRUN).
pub const BATCHES: [u32; 3] = [1, 8, 32];

/// AES throughput of one implementation at the two sizes bench-aes measures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Throughput {
    /// 10^9 bytes per second on 4 KiB buffers.
    pub at_4k: f64,
    /// 10^9 bytes per second on 64 KiB buffers.
    pub at_64k: f64,
}

impl Throughput {
    /// Bytes per nanosecond at `n` bytes (the interpolation in the module comment).
    pub fn bytes_per_ns(self, n: u64) -> f64 {
        let x = (n as f64).log2();
        let t = ((x - 12.0) / 4.0).clamp(0.0, 1.0);
        self.at_4k + (self.at_64k - self.at_4k) * t
    }
}

/// Everything one prediction depends on.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    /// Request bytes.
    pub n: u64,
    /// Host-side work per request, ns.
    pub host_ns: f64,
    /// VMRUNs per request when served alone.
    pub chunks: u64,
    /// The vault's AES.
    pub vault: Throughput,
    /// OpenSSL's AES-NI (what `*-aesni` in the kernel runs at, near enough).
    pub aesni: Throughput,
    /// One world switch, ns.
    pub exit_ns: f64,
    /// Requests per VMRUN.
    pub batch: u32,
}

/// The predicted throughput of the vault relative to AES-NI (1.0: as fast).
pub fn ratio(i: &Inputs) -> f64 {
    let n = i.n as f64;
    let aesni_ns = n / i.aesni.bytes_per_ns(i.n);
    let vault_ns = i.host_ns + i.chunks as f64 * i.exit_ns / f64::from(i.batch) + n / i.vault.bytes_per_ns(i.n);
    aesni_ns / vault_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand: 4096 bytes at 4.096 bytes/ns take 1000 ns on either side; 200 ns of
    /// host work and a 1250 ns exit give 1000 / 2450 = 0.40816; eight requests per exit give
    /// 1000 / (200 + 156.25 + 1000) = 0.73733.
    #[test]
    fn worked_example() {
        let same = Throughput { at_4k: 4.096, at_64k: 8.0 };
        let base = Inputs { n: 4096, host_ns: 200.0, chunks: 1, vault: same, aesni: same, exit_ns: 1250.0, batch: 1 };
        assert!((ratio(&base) - 0.408_163).abs() < 1e-5, "{}", ratio(&base));
        let batched = Inputs { batch: 8, ..base };
        assert!((ratio(&batched) - 0.737_327).abs() < 1e-5, "{}", ratio(&batched));
    }

    /// 4 KiB and below use the 4 KiB figure, 64 KiB and above the 64 KiB one, 16 KiB (log2
    /// halfway) the mean.
    #[test]
    fn interpolation() {
        let t = Throughput { at_4k: 2.0, at_64k: 6.0 };
        assert_eq!(t.bytes_per_ns(512), 2.0);
        assert_eq!(t.bytes_per_ns(4096), 2.0);
        assert_eq!(t.bytes_per_ns(16384), 4.0);
        assert_eq!(t.bytes_per_ns(65536), 6.0);
        assert_eq!(t.bytes_per_ns(1 << 20), 6.0);
    }

    /// 1350 cycles at 2.7 GHz is 500 ns.
    #[test]
    fn cycle_figure_in_time() {
        assert!((EXIT_COSTS[0].ns - 500.0).abs() < 1e-9);
    }
}
