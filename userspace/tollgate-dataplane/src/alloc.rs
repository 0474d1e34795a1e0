//! The process allocator for binaries that run the data plane (feature `huge-pages`).
//!
//! A worker touches each packet's flow state (port entry, legs, counters, SRTP context, its
//! stream table and replay windows) at random across every flow it holds: at 100,000 flows
//! that is ~900 MB, and with 4 KiB pages nearly every one of those structures costs a TLB miss
//! per packet (a two-level page walk under virtualisation). jemalloc with `thp:always` asks for
//! transparent huge pages (`MADV_HUGEPAGE`) on all of its mappings, which works whether the
//! host's THP mode is `always` or `madvise`; measured on the lab VM it cut the extra cost of
//! 100k flows over 100 flows from ~11% to ~5% of the relay's CPU per packet.

/// jemalloc as the global allocator.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's built-in options (read at its initialisation; `MALLOC_CONF` in the environment
/// still overrides them): huge pages for user mappings and, when it pays, for metadata.
#[allow(non_upper_case_globals)] // reason: the C symbol's name.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static u8> = Some(&b"thp:always,metadata_thp:auto\0"[0]);
