//! The vault's launch policy, built with the virtee `sev` crate's policy types, and every
//! bit of it explained.
//!
//! - SEV / SEV-ES: the 32-bit guest policy of LAUNCH_START (SEV API Specification, AMD pub.
//!   55766, table "Guest Policy"): flag bits from [`sev::launch::sev::PolicyFlags`];
//!   the minimum API version in bits 23:16 (major) and 31:24 (minor) is written here, since
//!   the crate's `Policy::from(u32)` reads that field as two nibbles of one byte.
//! - SNP: the 64-bit guest policy of SNP_LAUNCH_START (SEV-SNP Firmware ABI Specification,
//!   AMD pub. 56860, table "Guest Policy Structure"): [`sev::firmware::guest::GuestPolicy`].
//!
//! What the vault asks for: no debugging (the PSP refuses DBG_DECRYPT/DBG_ENCRYPT, so the
//! host cannot read the keys through the debug commands), no key sharing with other guests,
//! no sending/migration, SEV-ES required for the SEV-ES launch, and for SNP no migration
//! agent. No minimum firmware version is demanded in the policy: the firmware's TCB is
//! judged from the attestation report (`reported_tcb`), where it is signed. SMT is allowed
//! under SNP: SEV and SEV-ES cannot forbid it either, and forbidding it makes
//! SNP_LAUNCH_START fail on every host that leaves SMT on (the EPYC default); a deployment
//! that turns SMT off can require it.
use sev::firmware::guest::GuestPolicy;
use sev::launch::sev::PolicyFlags;
use sevault_hv::launch::LaunchMode;

/// The vault's SEV/SEV-ES policy flags, from the `sev` crate's names.
fn sev_flags(mode: LaunchMode) -> PolicyFlags {
    let mut flags = PolicyFlags::NO_DEBUG | PolicyFlags::NO_KEY_SHARING | PolicyFlags::NO_SEND;
    if mode == LaunchMode::SevEs {
        flags |= PolicyFlags::ENCRYPTED_STATE;
    }
    flags
}

/// Minimum SEV API version the vault demands (major, minor): none.
pub const SEV_MIN_API: (u8, u8) = (0, 0);
/// Minimum SNP ABI version the vault demands (major, minor): none.
pub const SNP_MIN_ABI: (u8, u8) = (0, 0);

/// SNP guest policy bit 17: reserved, must be one.
pub const SNP_RESERVED_MBO: u64 = 1 << 17;

/// A launch policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchPolicy {
    /// SEV / SEV-ES (32 bits).
    Sev(u32),
    /// SNP (64 bits).
    Snp(u64),
}

/// The policy the vault launches with in `mode`.
pub fn policy(mode: LaunchMode) -> LaunchPolicy {
    match mode {
        LaunchMode::Sev | LaunchMode::SevEs => {
            let (major, minor) = SEV_MIN_API;
            LaunchPolicy::Sev(u32::from(sev_flags(mode).bits()) | u32::from(major) << 16 | u32::from(minor) << 24)
        }
        LaunchMode::Snp => {
            let mut p = GuestPolicy::default();
            p.set_abi_major(u64::from(SNP_MIN_ABI.0));
            p.set_abi_minor(u64::from(SNP_MIN_ABI.1));
            p.set_smt_allowed(true);
            p.set_migrate_ma_allowed(false);
            p.set_debug_allowed(false);
            p.set_single_socket_required(false);
            // `From<GuestPolicy> for u64` sets the must-be-one bit 17.
            LaunchPolicy::Snp(u64::from(p))
        }
    }
}

/// One field of a policy, explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyField {
    /// Bit or bit range, as the spec writes it (`0`, `23:16`).
    pub bits: &'static str,
    /// The spec's name.
    pub name: &'static str,
    /// Its value.
    pub value: u64,
    /// What the value means for the vault.
    pub meaning: &'static str,
}

impl LaunchPolicy {
    /// The policy as one number.
    pub const fn bits(self) -> u64 {
        match self {
            Self::Sev(p) => p as u64,
            Self::Snp(p) => p,
        }
    }

    /// `0x…`, as the firmware interfaces and tools print it.
    pub fn hex(self) -> String {
        format!("{:#x}", self.bits())
    }

    /// Which spec table the bits come from.
    pub const fn source(self) -> &'static str {
        match self {
            Self::Sev(_) => "SEV API Specification (AMD pub. 55766), table \"Guest Policy\"",
            Self::Snp(_) => "SEV-SNP Firmware ABI Specification (AMD pub. 56860), table \"Guest Policy Structure\"",
        }
    }

    /// Every field, in bit order, with its meaning.
    pub fn explain(self) -> Vec<PolicyField> {
        match self {
            Self::Sev(p) => explain_sev(p),
            Self::Snp(p) => explain_snp(p),
        }
    }
}

const fn yes_no(bit: bool, yes: &'static str, no: &'static str) -> &'static str {
    if bit {
        yes
    } else {
        no
    }
}

fn explain_sev(p: u32) -> Vec<PolicyField> {
    let flags = PolicyFlags::from_bits_retain(p as u16);
    let field = |bits, name, value, meaning| PolicyField { bits, name, value, meaning };
    // (bit, name, flag, meaning when set, meaning when clear)
    let table: [(&'static str, &'static str, PolicyFlags, &'static str, &'static str); 6] = [
        (
            "0",
            "NODBG",
            PolicyFlags::NO_DEBUG,
            "debugging forbidden: the PSP refuses DBG_DECRYPT/DBG_ENCRYPT",
            "debugging ALLOWED: the host can decrypt guest memory through the PSP",
        ),
        (
            "1",
            "NOKS",
            PolicyFlags::NO_KEY_SHARING,
            "no key sharing: no other guest may use the vault's memory key",
            "key sharing ALLOWED with other guests",
        ),
        (
            "2",
            "ES",
            PolicyFlags::ENCRYPTED_STATE,
            "SEV-ES required: register state encrypted in the VMSA",
            "SEV-ES not required (plain SEV: register state visible to the host)",
        ),
        (
            "3",
            "NOSEND",
            PolicyFlags::NO_SEND,
            "sending forbidden: the vault can never be exported or migrated",
            "sending ALLOWED",
        ),
        ("4", "DOMAIN", PolicyFlags::DOMAIN, "sending only within the domain", "no domain restriction (moot: NOSEND)"),
        (
            "5",
            "SEV",
            PolicyFlags::SEV,
            "sending only to SEV-capable platforms",
            "no SEV-platform restriction (moot: NOSEND)",
        ),
    ];
    let mut fields: Vec<PolicyField> = table
        .into_iter()
        .map(|(bits, name, flag, set, clear)| {
            let on = flags.contains(flag);
            field(bits, name, u64::from(on), yes_no(on, set, clear))
        })
        .collect();
    fields.extend([
        field("15:6", "reserved", u64::from((p >> 6) & 0x3FF), "reserved, must be zero"),
        field("23:16", "API_MAJOR", u64::from((p >> 16) & 0xFF), "minimum SEV API major version: 0 = any firmware"),
        field("31:24", "API_MINOR", u64::from(p >> 24), "minimum SEV API minor version: 0 = any firmware"),
    ]);
    fields
}

fn explain_snp(p: u64) -> Vec<PolicyField> {
    let g = GuestPolicy::from(p);
    let bit = |b: bool| u64::from(b);
    let field = |bits, name, value, meaning| PolicyField { bits, name, value, meaning };
    vec![
        field("7:0", "ABI_MINOR", g.abi_minor(), "minimum SNP ABI minor version: 0 = any firmware"),
        field("15:8", "ABI_MAJOR", g.abi_major(), "minimum SNP ABI major version: 0 = any firmware"),
        field(
            "16",
            "SMT",
            bit(g.smt_allowed()),
            yes_no(
                g.smt_allowed(),
                "host SMT allowed (as under SEV/SEV-ES; required to launch on hosts with SMT on)",
                "host SMT must be off",
            ),
        ),
        field("17", "reserved (must be 1)", bit(p & SNP_RESERVED_MBO != 0), "reserved, must be one"),
        field(
            "18",
            "MIGRATE_MA",
            bit(g.migrate_ma_allowed()),
            yes_no(
                g.migrate_ma_allowed(),
                "a migration agent MAY be associated",
                "no migration agent: the vault can never be migrated",
            ),
        ),
        field(
            "19",
            "DEBUG",
            bit(g.debug_allowed()),
            yes_no(
                g.debug_allowed(),
                "debugging ALLOWED: the host can decrypt guest memory through the PSP",
                "debugging forbidden: the PSP refuses SNP_DBG_DECRYPT/ENCRYPT",
            ),
        ),
        field(
            "20",
            "SINGLE_SOCKET",
            bit(g.single_socket_required()),
            yes_no(
                g.single_socket_required(),
                "the vault may run on one socket only",
                "the vault may run on any socket",
            ),
        ),
        field(
            "21",
            "CXL_ALLOW",
            bit(g.cxl_allowed()),
            yes_no(g.cxl_allowed(), "CXL may be populated", "CXL may not be populated"),
        ),
        field(
            "22",
            "MEM_AES_256_XTS",
            bit(g.mem_aes_256_xts()),
            yes_no(
                g.mem_aes_256_xts(),
                "AES-256-XTS memory encryption required",
                "AES-128-XEX or AES-256-XTS (the platform's choice)",
            ),
        ),
        field(
            "23",
            "RAPL_DIS",
            bit(g.rapl_dis()),
            yes_no(g.rapl_dis(), "RAPL must be disabled", "RAPL may be enabled"),
        ),
        field(
            "24",
            "CIPHERTEXT_HIDING",
            bit(g.ciphertext_hiding()),
            yes_no(g.ciphertext_hiding(), "ciphertext hiding must be enabled", "ciphertext hiding optional"),
        ),
        field(
            "25",
            "PAGE_SWAP_DISABLE",
            bit(g.page_swap_disabled()),
            yes_no(
                g.page_swap_disabled(),
                "SNP_PAGE_MOVE/SWAP_OUT/SWAP_IN disabled",
                "page move/swap commands not disabled",
            ),
        ),
        field("63:26", "reserved", p >> 26, "reserved, must be zero"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sev_policies() {
        // NODBG | NOKS | NOSEND, and ES for SEV-ES; API version 0.0.
        assert_eq!(policy(LaunchMode::Sev), LaunchPolicy::Sev(0b1011));
        assert_eq!(policy(LaunchMode::SevEs), LaunchPolicy::Sev(0b1111));
        let es = policy(LaunchMode::SevEs).explain();
        let value = |name: &str| es.iter().find(|f| f.name == name).map(|f| f.value);
        assert_eq!(value("NODBG"), Some(1));
        assert_eq!(value("NOKS"), Some(1));
        assert_eq!(value("ES"), Some(1));
        assert_eq!(value("NOSEND"), Some(1));
        assert_eq!(value("DOMAIN"), Some(0));
        assert_eq!(value("SEV"), Some(0));
        assert_eq!(value("API_MAJOR"), Some(0));
        assert_eq!(value("API_MINOR"), Some(0));
        let plain = policy(LaunchMode::Sev).explain();
        assert_eq!(plain.iter().find(|f| f.name == "ES").map(|f| f.value), Some(0));
    }

    #[test]
    fn snp_policy() {
        // SMT (16) and the must-be-one bit 17; no DEBUG (19), no MIGRATE_MA (18); ABI 0.0.
        assert_eq!(policy(LaunchMode::Snp), LaunchPolicy::Snp(0x3_0000));
        let fields = policy(LaunchMode::Snp).explain();
        let value = |name: &str| fields.iter().find(|f| f.name == name).map(|f| f.value);
        assert_eq!(value("DEBUG"), Some(0));
        assert_eq!(value("MIGRATE_MA"), Some(0));
        assert_eq!(value("SMT"), Some(1));
        assert_eq!(value("reserved (must be 1)"), Some(1));
        assert_eq!(value("SINGLE_SOCKET"), Some(0));
    }

    /// The explanations re-assemble the number: no bit is left out or counted twice.
    #[test]
    fn explanations_cover_every_bit() {
        let widths = |bits: &str| -> (u32, u32) {
            match bits.split_once(':') {
                Some((hi, lo)) => (hi.parse().unwrap_or(0), lo.parse().unwrap_or(0)),
                None => (bits.parse().unwrap_or(0), bits.parse().unwrap_or(0)),
            }
        };
        for p in [
            LaunchPolicy::Sev(0xFFFF_FFFF),
            LaunchPolicy::Sev(0x0302_004B),
            LaunchPolicy::Snp(u64::MAX),
            LaunchPolicy::Snp(0x1234_5678_9ABC_DEF0),
            LaunchPolicy::Snp(0),
        ] {
            let mut rebuilt = 0u64;
            let mut covered = 0u64;
            for f in p.explain() {
                let (hi, lo) = widths(f.bits);
                let mask = (u64::MAX >> (63 - hi)) & !((1u64 << lo) - 1);
                assert_eq!(covered & mask, 0, "{} overlaps", f.name);
                covered |= mask;
                rebuilt |= f.value << lo;
            }
            let all = match p {
                LaunchPolicy::Sev(_) => u64::from(u32::MAX),
                LaunchPolicy::Snp(_) => u64::MAX,
            };
            assert_eq!(covered, all);
            // Bit 17 is read from the number itself (not through `GuestPolicy::from`, which
            // forces it), so a report without it shows 0 there.
            assert_eq!(rebuilt, p.bits(), "{}", p.hex());
        }
    }
}
