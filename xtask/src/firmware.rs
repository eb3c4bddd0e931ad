//! `cargo xtask firmware`: build the ESP32-C3 firmware image and check its size.
//!
//! Steps:
//! 1. make sure the `riscv32imc-unknown-none-elf` target and `llvm-tools` are
//!    installed (`rustup`), installing them if missing;
//! 2. `cargo build --release` in `firmware/esp32c3` (its own workspace);
//! 3. read the ELF's section table with `llvm-size -A` and report
//!    - **flash**: what the app image carries, i.e. code and read-only data
//!      mapped from flash (`.text`, `.rodata`, ...) plus the initial contents of
//!      the RAM sections loaded from flash (`.data`, `.rwtext`, `.trap`);
//!    - **static RAM**: `.data` + `.bss` (+ code copied into IRAM, which on the
//!      C3 is the same SRAM as DRAM), not counting the heap arena;
//! 4. convert the ELF into a flashable image with esptool's `elf2image`
//!    (`pip install esptool` if it is missing) and check it with `image-info`
//!    (segment checksum and SHA-256 must be valid).
//!
//! It fails when the image does not fit a 1 MiB OTA slot, or when static RAM
//! leaves less than 100 KiB for heap and stack.
//!
//! RAM assumption: the ESP32-C3 has 400 KiB of SRAM; 16 KiB are instruction
//! cache and the ROM and 2nd-stage bootloader keep the top of it while the app
//! starts. esp-hal's linker script gives the application **313 KiB** of DRAM
//! (`DRAM : ORIGIN = 0x3FC80000, LENGTH = 313K`); IRAM code (`.rwtext`) shares
//! that SRAM (mirrored by `.rwdata_dummy`). The ~64 KiB that the bootloader
//! frees after boot (`#[ram(reclaimed)]`) are reported but not counted as
//! available, so the check is conservative.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// Target triple of the ESP32-C3.
const TARGET: &str = "riscv32imc-unknown-none-elf";
/// Name of the firmware binary (`[[bin]]` in `firmware/esp32c3/Cargo.toml`).
const BIN: &str = "ofmon-firmware";
/// Size of one OTA app slot (`partitions.csv`).
const OTA_SLOT: u64 = 1024 * 1024;
/// Soft target for the image size (DESIGN.md: aim < 640 KiB).
const IMAGE_AIM: u64 = 640 * 1024;
/// DRAM the linker gives the app (esp-hal `ld/esp32c3/memory.x`).
const DRAM_ORIGIN: u64 = 0x3FC8_0000;
const DRAM_LEN: u64 = 313 * 1024;
/// End of the region the 2nd-stage bootloader frees after boot.
const DRAM2_END: u64 = 0x3FCD_E710;
/// Minimum room for heap + stack.
const MIN_HEAP_AND_STACK: u64 = 100 * 1024;

/// Flash-mapped address windows on the C3.
const IROM: std::ops::Range<u64> = 0x4200_0000..0x4280_0000;
const DROM: std::ops::Range<u64> = 0x3C00_0000..0x3C80_0000;
/// Internal SRAM seen on the instruction bus.
const IRAM: std::ops::Range<u64> = 0x4037_C000..0x403E_0000;

/// One allocated section of the ELF.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    name: String,
    size: u64,
    addr: u64,
}

/// Sizes derived from the section table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Sizes {
    /// Code executed from flash (IROM).
    text: u64,
    /// Read-only data mapped from flash (DROM).
    rodata: u64,
    /// Initialised RAM contents carried in the image (`.data`, `.rwtext`, `.trap`).
    ram_init: u64,
    /// Static RAM in the 313 KiB DRAM window, heap arenas included.
    static_ram: u64,
    /// Static RAM in the region reclaimed from the bootloader.
    reclaimed: u64,
}

/// Runs the firmware build and size check.
pub fn run() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf();
    let fw = root.join("firmware").join("esp32c3");
    ensure!(
        fw.join("Cargo.toml").is_file(),
        "{} not found",
        fw.display()
    );

    ensure_rustup_parts(&fw)?;

    eprintln!("==> cargo build --release ({TARGET}) in {}", fw.display());
    let status = Command::new(cargo())
        .current_dir(&fw)
        .args(["build", "--release", "--target", TARGET])
        // The firmware is its own workspace; don't let a host build's
        // flags leak in when xtask was started by cargo.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .context("running cargo build for the firmware")?;
    ensure!(status.success(), "firmware build failed");

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { fw.join(p) } else { p })
        .unwrap_or_else(|| fw.join("target"));
    let elf = target_dir.join(TARGET).join("release").join(BIN);
    ensure!(elf.is_file(), "built ELF not found at {}", elf.display());

    let tools = llvm_tools_dir(&fw)?;
    let size_out = output(
        Command::new(tools.join("llvm-size")).arg("-A").arg(&elf),
        "llvm-size",
    )?;
    let sections = parse_llvm_size(&size_out)?;
    let sizes = classify(&sections);

    let nm_out = output(
        Command::new(tools.join("llvm-nm"))
            .args(["-S", "-C", "--defined-only"])
            .arg(&elf),
        "llvm-nm",
    )?;
    let heap = heap_arena_in_dram(&nm_out);

    let image = elf.with_extension("bin");
    esptool_image(&elf, &image)?;
    let image_len = std::fs::metadata(&image)
        .with_context(|| format!("reading {}", image.display()))?
        .len();

    let flash = sizes.text + sizes.rodata;
    let static_no_heap = sizes.static_ram.saturating_sub(heap);
    let room = DRAM_LEN.saturating_sub(static_no_heap);
    let kib = |b: u64| b as f64 / 1024.0;
    println!("firmware ELF: {}", elf.display());
    println!(
        "  flash  text + rodata   {:>9} B ({:.1} KiB)  [text {} B, rodata {} B]",
        flash,
        kib(flash),
        sizes.text,
        sizes.rodata
    );
    println!(
        "  flash  RAM init data   {:>9} B ({:.1} KiB)",
        sizes.ram_init,
        kib(sizes.ram_init)
    );
    println!(
        "  image  {:<15} {:>9} B ({:.1} KiB of {} KiB slot, aim < {} KiB)",
        image
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("image"),
        image_len,
        kib(image_len),
        OTA_SLOT / 1024,
        IMAGE_AIM / 1024
    );
    println!(
        "  RAM    static (data+bss+iram) {:>9} B ({:.1} KiB), of which heap arena {} B",
        sizes.static_ram,
        kib(sizes.static_ram),
        heap
    );
    println!(
        "  RAM    heap + stack room {:>9} B ({:.1} KiB of {} KiB DRAM; need >= {} KiB)",
        room,
        kib(room),
        DRAM_LEN / 1024,
        MIN_HEAP_AND_STACK / 1024
    );
    if sizes.reclaimed > 0 {
        println!(
            "  RAM    in bootloader-reclaimed region {} B (not counted above)",
            sizes.reclaimed
        );
    }

    let mut problems = Vec::new();
    if image_len > OTA_SLOT || flash + sizes.ram_init > OTA_SLOT {
        problems.push(format!(
            "image {image_len} B does not fit the {OTA_SLOT} B OTA slot"
        ));
    }
    if room < MIN_HEAP_AND_STACK {
        problems.push(format!(
            "static RAM leaves only {room} B for heap + stack (need {MIN_HEAP_AND_STACK} B)"
        ));
    }
    if !problems.is_empty() {
        bail!("firmware size check failed: {}", problems.join("; "));
    }
    if image_len > IMAGE_AIM {
        println!(
            "  note: image is above the {} KiB aim (still fits the slot)",
            IMAGE_AIM / 1024
        );
    }
    println!("firmware size check: ok");
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).with_context(|| format!("{what} printed non-UTF-8"))
}

/// Installs the target and llvm-tools with rustup for the toolchain used in `fw`.
fn ensure_rustup_parts(fw: &Path) -> Result<()> {
    let targets = output(
        Command::new("rustup")
            .current_dir(fw)
            .args(["target", "list", "--installed"]),
        "rustup target list",
    )?;
    if !targets.lines().any(|l| l.trim() == TARGET) {
        eprintln!("==> rustup target add {TARGET}");
        let st = Command::new("rustup")
            .current_dir(fw)
            .args(["target", "add", TARGET])
            .status()
            .context("running rustup target add")?;
        ensure!(st.success(), "rustup target add {TARGET} failed");
    }
    let comps = output(
        Command::new("rustup")
            .current_dir(fw)
            .args(["component", "list", "--installed"]),
        "rustup component list",
    )?;
    if !comps.lines().any(|l| l.starts_with("llvm-tools")) {
        eprintln!("==> rustup component add llvm-tools");
        let st = Command::new("rustup")
            .current_dir(fw)
            .args(["component", "add", "llvm-tools"])
            .status()
            .context("running rustup component add")?;
        ensure!(st.success(), "rustup component add llvm-tools failed");
    }
    Ok(())
}

/// `<sysroot>/lib/rustlib/<host>/bin` of the toolchain used in `fw`.
fn llvm_tools_dir(fw: &Path) -> Result<PathBuf> {
    let sysroot = output(
        Command::new("rustc")
            .current_dir(fw)
            .args(["--print", "sysroot"]),
        "rustc --print sysroot",
    )?;
    let vv = output(
        Command::new("rustc").current_dir(fw).arg("-vV"),
        "rustc -vV",
    )?;
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("rustc -vV printed no host triple")?;
    let dir = Path::new(sysroot.trim())
        .join("lib")
        .join("rustlib")
        .join(host.trim())
        .join("bin");
    ensure!(
        dir.join("llvm-size").is_file(),
        "llvm-size not found in {} (rustup component add llvm-tools)",
        dir.display()
    );
    Ok(dir)
}

/// Parses `llvm-size -A` (System V format: `section size addr`, decimal).
fn parse_llvm_size(text: &str) -> Result<Vec<Section>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(name), Some(size), Some(addr), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Ok(size), Ok(addr)) = (size.parse::<u64>(), addr.parse::<u64>()) else {
            continue; // header line
        };
        out.push(Section {
            name: name.to_string(),
            size,
            addr,
        });
    }
    ensure!(!out.is_empty(), "llvm-size printed no sections");
    Ok(out)
}

/// Sorts sections into flash and RAM by their address on the ESP32-C3.
fn classify(sections: &[Section]) -> Sizes {
    let dram = DRAM_ORIGIN..DRAM_ORIGIN + DRAM_LEN;
    let dram2 = DRAM_ORIGIN + DRAM_LEN..DRAM2_END;
    let mut s = Sizes::default();
    for sec in sections {
        // Address-space placeholders (`.rotext_dummy`, `.rwdata_dummy`) and the
        // stack (what is left over) are not content.
        let dummy = sec.name.ends_with("_dummy");
        if sec.addr == 0 || sec.name == ".stack" {
            continue;
        }
        if IROM.contains(&sec.addr) && !dummy {
            s.text += sec.size;
        } else if DROM.contains(&sec.addr) && !dummy {
            s.rodata += sec.size;
        } else if dram.contains(&sec.addr) {
            // `.rwdata_dummy` reserves the DRAM alias of the IRAM code: it is RAM use.
            s.static_ram += sec.size;
            if sec.name.starts_with(".data") {
                s.ram_init += sec.size;
            }
        } else if dram2.contains(&sec.addr) {
            s.reclaimed += sec.size;
        } else if IRAM.contains(&sec.addr) {
            // Counted in RAM through `.rwdata_dummy`; carried in the image.
            s.ram_init += sec.size;
        }
    }
    s
}

/// Total size of `heap_allocator!` arenas (`...::HEAP` statics, not the
/// allocator object `esp_alloc::HEAP`) placed in the DRAM window.
fn heap_arena_in_dram(nm: &str) -> u64 {
    let dram = DRAM_ORIGIN..DRAM_ORIGIN + DRAM_LEN;
    nm.lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let size = u64::from_str_radix(f.next()?, 16).ok()?;
            let _kind = f.next()?;
            let name = strip_hash(f.next()?.trim());
            (name.ends_with("::HEAP") && !name.starts_with("esp_alloc::") && dram.contains(&addr))
                .then_some(size)
        })
        .sum()
}

/// Drops a legacy-mangling hash suffix (`::h0123456789abcdef`).
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// `elf2image` + `image-info` with esptool (installed with pip if missing).
fn esptool_image(elf: &Path, image: &Path) -> Result<()> {
    let have = Command::new("python3")
        .args(["-c", "import esptool"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        eprintln!("==> pip install esptool");
        let st = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "esptool"])
            .status()
            .context("running pip (python3 -m pip); install esptool by hand")?;
        ensure!(st.success(), "pip install esptool failed");
    }
    let out = output(
        Command::new("python3")
            .args([
                "-m",
                "esptool",
                "--chip",
                "esp32c3",
                "elf2image",
                "--output",
            ])
            .arg(image)
            .arg(elf),
        "esptool elf2image",
    )?;
    ensure!(
        out.contains("Successfully created"),
        "esptool elf2image did not create the image:\n{out}"
    );
    let info = output(
        Command::new("python3")
            .args(["-m", "esptool", "--chip", "esp32c3", "image-info"])
            .arg(image),
        "esptool image-info",
    )?;
    check_image_info(&info)
}

/// The checksum and the validation hash must both be reported valid.
fn check_image_info(info: &str) -> Result<()> {
    let line = |key: &str| info.lines().find(|l| l.trim_start().starts_with(key));
    for key in ["Checksum:", "Validation hash:"] {
        match line(key) {
            Some(l) if l.contains("(valid)") => {}
            Some(l) => bail!("esptool image-info: {}", l.trim()),
            None => bail!("esptool image-info printed no {key} line:\n{info}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE_A: &str = "\
ofmon-firmware  :
section                    size         addr
.trap                      1936   1077411840
.rwtext                    3776   1077413776
.rwdata_dummy              5712   1070071808
.data                      1496   1070077520
.bss                      66148   1070079016
.flash.appdesc              256   1006632992
.rodata                   12396   1006633248
.rotext_dummy             65536   1107296288
.text                     32768   1107361824
.stack                   247156   1070145164
.debug_info              999999            0
Total                   1826111
";

    #[test]
    fn classifies_sections_by_address() {
        let secs = parse_llvm_size(SIZE_A).unwrap();
        assert_eq!(secs.len(), 11);
        let s = classify(&secs);
        assert_eq!(s.text, 32768);
        assert_eq!(s.rodata, 256 + 12396);
        assert_eq!(s.static_ram, 5712 + 1496 + 66148);
        assert_eq!(s.ram_init, 1936 + 3776 + 1496);
        assert_eq!(s.reclaimed, 0);
    }

    #[test]
    fn finds_heap_arenas_only() {
        let nm = "\
3fc81f40 00010000 b ofmon_firmware::__esp_rtos_main::HEAP
3fc81c28 00002000 b ofmon_firmware::main::{{closure}}::HEAP::h7030e0e03ec8b2b5
3fc81000 00000020 B esp_alloc::HEAP::hc21f9a5741a7f211
3fcd0000 00004000 b ofmon_firmware::reclaimed::HEAP
42000000 00000010 T main
";
        assert_eq!(heap_arena_in_dram(nm), 0x10000 + 0x2000);
    }

    #[test]
    fn image_info_must_be_valid() {
        let ok = "Checksum: 0x91 (valid)\nValidation hash: 2ad4 (valid)\n";
        assert!(check_image_info(ok).is_ok());
        let bad = "Checksum: 0x91 (invalid: calculated 0x12)\nValidation hash: 2a (valid)\n";
        assert!(check_image_info(bad).is_err());
        assert!(check_image_info("nothing").is_err());
    }
}
