//! The PDB container and the streams that locate everything else, read
//! with every offset checked: the `pdb` crate slices without checks in its
//! line, string-table, PDB-info and module paths, and panics on corrupt
//! files there.
//!
//! Layouts: LLVM's "The PDB File Format" documentation (MSF superblock and
//! stream directory, PDB info stream with its named-stream hash table, DBI
//! stream header, module info records and optional debug header, the
//! `/names` string table, C13 line subsections) and microsoft-pdb.

use std::collections::HashMap;

use super::PdbError;
use super::codeview::Reader;

/// `Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0`.
const MAGIC: &[u8; 32] = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0";
/// A stream size that marks an absent stream.
const NIL_STREAM: u32 = u32::MAX;
/// A stream index that means "none".
pub const NO_STREAM: u16 = u16::MAX;

fn corrupt(what: &str, why: &'static str) -> PdbError {
    PdbError::Corrupt {
        what: what.to_owned(),
        why,
    }
}

/// The MSF container: fixed-size blocks, and a directory listing each
/// stream's size and blocks.
#[derive(Debug)]
pub struct Msf<'a> {
    data: &'a [u8],
    block_size: usize,
    /// Per stream: size and blocks, or `None` for an absent stream.
    streams: Vec<Option<(usize, Vec<usize>)>>,
}

impl<'a> Msf<'a> {
    /// Reads the superblock and the stream directory.
    ///
    /// # Errors
    /// Not an MSF 7.00 file, truncated, or a directory pointing outside it.
    pub fn parse(data: &'a [u8]) -> Result<Self, PdbError> {
        let header = |why| corrupt("the MSF superblock", why);
        if data.get(..32) != Some(&MAGIC[..]) {
            return Err(PdbError::NotPdb);
        }
        let mut r = Reader::new(data);
        r.skip(32).ok_or_else(|| header("truncated"))?;
        let block_size = r.u32().ok_or_else(|| header("truncated"))?;
        r.u32().ok_or_else(|| header("truncated"))?; // free block map
        let block_count = r.u32().ok_or_else(|| header("truncated"))?;
        let directory_bytes = r.u32().ok_or_else(|| header("truncated"))?;
        r.u32().ok_or_else(|| header("truncated"))?;
        let block_map = r.u32().ok_or_else(|| header("truncated"))?;
        if !(512..=0x8000).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(header("of an invalid block size"));
        }
        let block_size = usize::try_from(block_size).map_err(|_| header("too large"))?;
        let block_count = usize::try_from(block_count).map_err(|_| header("too large"))?;
        if !data.len().is_multiple_of(block_size)
            || block_count
                .checked_mul(block_size)
                .is_none_or(|size| size > data.len())
        {
            return Err(header("of a truncated file"));
        }
        let mut msf = Self {
            data,
            block_size,
            streams: Vec::new(),
        };

        // The directory's blocks are listed in the block-map block.
        let directory_bytes = usize::try_from(directory_bytes).map_err(|_| header("too large"))?;
        if directory_bytes > data.len() {
            return Err(header("of a directory larger than the file"));
        }
        let directory_blocks = directory_bytes.div_ceil(block_size);
        let map = msf
            .block(usize::try_from(block_map).unwrap_or(usize::MAX))
            .ok_or_else(|| header("of a block map outside the file"))?;
        let mut map = Reader::new(map);
        let mut blocks = Vec::with_capacity(directory_blocks);
        for _ in 0..directory_blocks {
            let block = map
                .u32()
                .ok_or_else(|| header("of a directory too large for its map"))?;
            blocks.push(usize::try_from(block).unwrap_or(usize::MAX));
        }
        let directory = msf
            .gather(&blocks, directory_bytes)
            .ok_or_else(|| header("of a directory outside the file"))?;

        let dir = |why| corrupt("the MSF stream directory", why);
        let mut r = Reader::new(&directory);
        let count = usize::try_from(r.u32().ok_or_else(|| dir("truncated"))?).unwrap_or(usize::MAX);
        if count > r.remaining() / 4 {
            return Err(dir("listing more streams than it holds"));
        }
        let mut sizes = Vec::with_capacity(count);
        for _ in 0..count {
            sizes.push(r.u32().ok_or_else(|| dir("truncated"))?);
        }
        for size in sizes {
            if size == NIL_STREAM {
                msf.streams.push(None);
                continue;
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            // No stream is larger than the file it is in.
            if size > data.len() {
                return Err(dir("giving a stream larger than the file"));
            }
            let mut blocks = Vec::with_capacity(size.div_ceil(block_size));
            for _ in 0..size.div_ceil(block_size) {
                let block = r.u32().ok_or_else(|| dir("truncated"))?;
                let block = usize::try_from(block).unwrap_or(usize::MAX);
                if block >= block_count {
                    return Err(dir("pointing past the last block"));
                }
                blocks.push(block);
            }
            msf.streams.push(Some((size, blocks)));
        }
        Ok(msf)
    }

    fn block(&self, index: usize) -> Option<&'a [u8]> {
        let start = index.checked_mul(self.block_size)?;
        self.data.get(start..start.checked_add(self.block_size)?)
    }

    fn gather(&self, blocks: &[usize], size: usize) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(size);
        for block in blocks {
            bytes.extend_from_slice(self.block(*block)?);
        }
        bytes.truncate(size);
        (bytes.len() == size).then_some(bytes)
    }

    /// A stream's bytes; `None` when it is absent.
    ///
    /// # Errors
    /// The stream's blocks are outside the file.
    pub fn stream(&self, index: u16) -> Result<Option<Vec<u8>>, PdbError> {
        if index == NO_STREAM {
            return Ok(None);
        }
        match self.streams.get(usize::from(index)) {
            Some(Some((size, blocks))) => self
                .gather(blocks, *size)
                .map(Some)
                .ok_or_else(|| corrupt("a stream", "outside the file")),
            _ => Ok(None),
        }
    }

    /// A stream that must be there.
    ///
    /// # Errors
    /// It is absent or outside the file.
    pub fn required(&self, index: u16, what: &str) -> Result<Vec<u8>, PdbError> {
        self.stream(index)?.ok_or_else(|| corrupt(what, "missing"))
    }
}

/// The PDB info stream's identity and named streams.
#[derive(Debug)]
pub struct PdbInfo {
    /// The GUID, as stored (the same bytes as the image's CodeView record).
    pub guid: [u8; 16],
    /// Named streams (`/names`, `/LinkInfo`...) and their indices.
    pub named: HashMap<String, u16>,
}

impl PdbInfo {
    /// Reads stream 1.
    ///
    /// # Errors
    /// It is truncated or its named-stream table is inconsistent.
    pub fn parse(stream: &[u8]) -> Result<Self, PdbError> {
        let bad = |why| corrupt("the PDB info stream", why);
        let mut r = Reader::new(stream);
        r.skip(12).ok_or_else(|| bad("truncated"))?; // version, signature, age
        let guid: [u8; 16] = r
            .take(16)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("truncated"))?;
        // The named-stream map: a string buffer, then a hash table of
        // (offset in the buffer, stream index) for its present buckets.
        let buffer_size =
            usize::try_from(r.u32().ok_or_else(|| bad("truncated"))?).unwrap_or(usize::MAX);
        let buffer = r.take(buffer_size).ok_or_else(|| bad("truncated"))?;
        let _size = r.u32().ok_or_else(|| bad("truncated"))?;
        let capacity = r.u32().ok_or_else(|| bad("truncated"))?;
        let present = bit_vector(&mut r).ok_or_else(|| bad("truncated"))?;
        let _deleted = bit_vector(&mut r).ok_or_else(|| bad("truncated"))?;
        let mut named = HashMap::new();
        for bucket in 0..capacity {
            let word = usize::try_from(bucket / 32).unwrap_or(usize::MAX);
            let set = present
                .get(word)
                .is_some_and(|bits| bits & (1 << (bucket % 32)) != 0);
            if !set {
                continue;
            }
            let key =
                usize::try_from(r.u32().ok_or_else(|| bad("truncated"))?).unwrap_or(usize::MAX);
            let value = r.u32().ok_or_else(|| bad("truncated"))?;
            let name = buffer
                .get(key..)
                .ok_or_else(|| bad("naming a stream outside its buffer"))?;
            let name = Reader::new(name).name().unwrap_or_default();
            if let Ok(index) = u16::try_from(value) {
                named.insert(name, index);
            }
        }
        Ok(Self { guid, named })
    }
}

fn bit_vector(r: &mut Reader<'_>) -> Option<Vec<u32>> {
    let words = usize::try_from(r.u32()?).ok()?;
    if words > r.remaining() / 4 {
        return None;
    }
    (0..words).map(|_| r.u32()).collect()
}

/// One module (object file) of the DBI stream.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    /// Its stream.
    pub stream: u16,
    /// Bytes of symbols at the stream's start (with the 4-byte signature).
    pub symbol_bytes: usize,
    /// Bytes of C11 line data after them.
    pub c11_bytes: usize,
    /// Bytes of C13 line data after those.
    pub c13_bytes: usize,
}

/// The DBI stream's parts the debugger uses.
#[derive(Debug)]
pub struct Dbi {
    /// The symbol record stream (publics and globals).
    pub symbol_records: u16,
    /// The modules.
    pub modules: Vec<Module>,
    /// The section headers stream.
    pub section_headers: u16,
    /// The OMAP from original to final addresses, if the image was
    /// rearranged after linking.
    pub omap_from_source: u16,
    /// The original section headers, with an OMAP.
    pub original_section_headers: u16,
}

impl Dbi {
    /// Reads stream 3.
    ///
    /// # Errors
    /// A truncated header or module list, or substream sizes past its end.
    pub fn parse(stream: &[u8]) -> Result<Self, PdbError> {
        let bad = |why| corrupt("the DBI stream", why);
        let mut r = Reader::new(stream);
        r.skip(20).ok_or_else(|| bad("truncated"))?;
        let symbol_records = r.u16().ok_or_else(|| bad("truncated"))?;
        r.skip(2).ok_or_else(|| bad("truncated"))?;
        let mut sizes = [0usize; 8];
        for size in &mut sizes {
            *size = usize::try_from(r.i32().ok_or_else(|| bad("truncated"))?)
                .map_err(|_| bad("giving a negative substream size"))?;
        }
        // module info, section contributions, section map, file info,
        // type server map, MFC type server index, optional debug header,
        // EC substream.
        let [
            modules_size,
            contributions,
            section_map,
            files,
            type_servers,
            _,
            debug_header,
            ec,
        ] = sizes;
        r.skip(8).ok_or_else(|| bad("truncated"))?; // flags, machine, reserved
        let module_bytes = r.take(modules_size).ok_or_else(|| bad("truncated"))?;
        let before_debug_header = [contributions, section_map, files, type_servers, ec]
            .into_iter()
            .try_fold(0usize, usize::checked_add)
            .ok_or_else(|| bad("too large"))?;
        r.skip(before_debug_header)
            .ok_or_else(|| bad("truncated"))?;
        let debug_header = r.take(debug_header).ok_or_else(|| bad("truncated"))?;
        let mut header = Reader::new(debug_header);
        let mut debug_streams = [NO_STREAM; 11];
        for slot in &mut debug_streams {
            match header.u16() {
                Some(index) => *slot = index,
                None => break,
            }
        }

        let mut modules = Vec::new();
        let mut m = Reader::new(module_bytes);
        while m.remaining() > 0 {
            let bad = |why| corrupt("a DBI module record", why);
            m.skip(4 + 28 + 2).ok_or_else(|| bad("truncated"))?; // unused, contribution, flags
            let stream = m.u16().ok_or_else(|| bad("truncated"))?;
            let symbol_bytes = m.u32().ok_or_else(|| bad("truncated"))?;
            let c11_bytes = m.u32().ok_or_else(|| bad("truncated"))?;
            let c13_bytes = m.u32().ok_or_else(|| bad("truncated"))?;
            m.skip(16).ok_or_else(|| bad("truncated"))?; // files, padding, offsets, two name indices
            m.name().ok_or_else(|| bad("truncated"))?; // module name
            m.name().ok_or_else(|| bad("truncated"))?; // object file name
            let consumed = module_bytes.len() - m.remaining();
            m.skip(consumed.next_multiple_of(4) - consumed)
                .ok_or_else(|| bad("truncated"))?;
            let size = |bytes: u32| usize::try_from(bytes).unwrap_or(usize::MAX);
            modules.push(Module {
                stream,
                symbol_bytes: size(symbol_bytes),
                c11_bytes: size(c11_bytes),
                c13_bytes: size(c13_bytes),
            });
        }
        Ok(Self {
            symbol_records,
            modules,
            section_headers: debug_streams[5],
            omap_from_source: debug_streams[4],
            original_section_headers: debug_streams[10],
        })
    }
}

/// Turns section:offset addresses into RVAs: through the section headers,
/// and the OMAP when the image was rearranged after linking.
#[derive(Debug, Default)]
pub struct SectionMap {
    /// Virtual addresses of the sections, in order.
    sections: Vec<u32>,
    /// `(source RVA, target RVA)`, sorted by source.
    omap: Option<Vec<(u32, u32)>>,
}

fn section_addresses(stream: &[u8]) -> Vec<u32> {
    // IMAGE_SECTION_HEADER: 40 bytes, VirtualAddress at offset 12.
    stream
        .chunks_exact(40)
        .map(|header| u32::from_le_bytes([header[12], header[13], header[14], header[15]]))
        .collect()
}

impl SectionMap {
    /// Reads the section headers (and OMAP) streams the DBI names.
    ///
    /// # Errors
    /// A stream is outside the file.
    pub fn read(msf: &Msf<'_>, dbi: &Dbi) -> Result<Self, PdbError> {
        let omap = msf.stream(dbi.omap_from_source)?;
        let original = msf.stream(dbi.original_section_headers)?;
        if let (Some(omap), Some(original)) = (omap, original) {
            let mut records: Vec<(u32, u32)> = omap
                .chunks_exact(8)
                .map(|pair| {
                    (
                        u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]),
                        u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
                    )
                })
                .collect();
            records.sort_unstable();
            return Ok(Self {
                sections: section_addresses(&original),
                omap: Some(records),
            });
        }
        let headers = msf.stream(dbi.section_headers)?.unwrap_or_default();
        Ok(Self {
            sections: section_addresses(&headers),
            omap: None,
        })
    }

    /// The RVA of `offset` in section `section` (numbered from 1).
    #[must_use]
    pub fn rva(&self, section: u16, offset: u32) -> Option<u32> {
        let base = *self.sections.get(usize::from(section).checked_sub(1)?)?;
        let rva = base.checked_add(offset)?;
        let Some(omap) = &self.omap else {
            return Some(rva);
        };
        let at = omap.partition_point(|(source, _)| *source <= rva);
        let (source, target) = *omap.get(at.checked_sub(1)?)?;
        // A zero target marks code the rearrangement removed.
        (target != 0).then(|| target.checked_add(rva - source))?
    }
}

/// The `/names` stream: strings by offset.
#[derive(Debug, Default)]
pub struct Names {
    bytes: Vec<u8>,
}

impl Names {
    /// Reads the stream: signature `0xEFFEEFFE`, version, size, strings.
    ///
    /// # Errors
    /// A wrong signature or a size past the stream's end.
    pub fn parse(stream: &[u8]) -> Result<Self, PdbError> {
        let bad = |why| corrupt("the /names stream", why);
        let mut r = Reader::new(stream);
        if r.u32() != Some(0xEFFE_EFFE) {
            return Err(bad("without its signature"));
        }
        r.u32().ok_or_else(|| bad("truncated"))?;
        let size = usize::try_from(r.u32().ok_or_else(|| bad("truncated"))?).unwrap_or(usize::MAX);
        let bytes = r.take(size).ok_or_else(|| bad("truncated"))?.to_vec();
        Ok(Self { bytes })
    }

    /// The string at `offset`.
    #[must_use]
    pub fn get(&self, offset: u32) -> Option<String> {
        let rest = self.bytes.get(usize::try_from(offset).ok()?..)?;
        Reader::new(rest).name()
    }
}

/// Symbol records one after another: a 16-bit length, then the record
/// (kind and body); alignment and skip records dropped.
///
/// # Errors
/// A record runs past the end or is too short to have a kind.
pub fn records<'a>(bytes: &'a [u8], what: &str) -> Result<Vec<&'a [u8]>, PdbError> {
    let mut records = Vec::new();
    let mut r = Reader::new(bytes);
    while r.remaining() > 0 {
        let length = r.u16().ok_or_else(|| corrupt(what, "truncated"))?;
        if length < 2 {
            return Err(corrupt(what, "holding a record too short for its kind"));
        }
        let record = r
            .take(usize::from(length))
            .ok_or_else(|| corrupt(what, "holding a record that runs past its end"))?;
        // S_SKIP, S_ALIGN: padding.
        if !matches!(u16::from_le_bytes([record[0], record[1]]), 0x0007 | 0x0402) {
            records.push(record);
        }
    }
    Ok(records)
}

/// One line-table entry: RVA, file name offset in `/names`, line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRecord {
    /// Where the code for the line starts.
    pub section: u16,
    /// Offset in the section.
    pub offset: u32,
    /// The file's name, as an offset in `/names`.
    pub file_name: u32,
    /// The line number.
    pub line: u32,
}

/// A module's C13 line data: `DEBUG_S_FILECHKSMS` (files by offset) and
/// `DEBUG_S_LINES` subsections (blocks of lines per file).
///
/// # Errors
/// A subsection, block or file reference outside the data.
pub fn c13_lines(bytes: &[u8]) -> Result<Vec<LineRecord>, PdbError> {
    let bad = |why| corrupt("a module's C13 line data", why);
    let mut subsections = Vec::new();
    let mut r = Reader::new(bytes);
    while r.remaining() >= 8 {
        let kind = r.u32().ok_or_else(|| bad("truncated"))?;
        let length =
            usize::try_from(r.u32().ok_or_else(|| bad("truncated"))?).unwrap_or(usize::MAX);
        let body = r
            .take(length)
            .ok_or_else(|| bad("holding a subsection past its end"))?;
        let pad = length.next_multiple_of(4) - length;
        r.skip_at_most(pad);
        // The top bit marks a subsection the linker may ignore.
        subsections.push((kind & 0x7fff_ffff, body));
    }
    // DEBUG_S_FILECHKSMS: name offset, checksum size and kind, checksum,
    // padded to four bytes; a line block names its file by entry offset.
    let mut files: HashMap<u32, u32> = HashMap::new();
    for (_, body) in subsections.iter().filter(|(kind, _)| *kind == 0xf4) {
        let mut f = Reader::new(body);
        while f.remaining() >= 6 {
            let at = u32::try_from(body.len() - f.remaining()).unwrap_or(u32::MAX);
            let name = f.u32().ok_or_else(|| bad("truncated"))?;
            let checksum = usize::from(f.u8().ok_or_else(|| bad("truncated"))?);
            f.u8().ok_or_else(|| bad("truncated"))?;
            f.skip(checksum)
                .ok_or_else(|| bad("holding a checksum past its end"))?;
            let used = body.len() - f.remaining();
            f.skip_at_most(used.next_multiple_of(4) - used);
            files.insert(at, name);
        }
    }
    let mut lines = Vec::new();
    for (_, body) in subsections.iter().filter(|(kind, _)| *kind == 0xf2) {
        let mut l = Reader::new(body);
        let offset = l.u32().ok_or_else(|| bad("truncated"))?;
        let section = l.u16().ok_or_else(|| bad("truncated"))?;
        let flags = l.u16().ok_or_else(|| bad("truncated"))?;
        l.u32().ok_or_else(|| bad("truncated"))?; // code size
        let columns = flags & 1 != 0;
        while l.remaining() > 0 {
            let file = l.u32().ok_or_else(|| bad("truncated"))?;
            let count =
                usize::try_from(l.u32().ok_or_else(|| bad("truncated"))?).unwrap_or(usize::MAX);
            let block_size = usize::try_from(l.u32().ok_or_else(|| bad("truncated"))?).unwrap_or(0);
            let per_line = if columns { 12 } else { 8 };
            if count
                .checked_mul(per_line)
                .and_then(|size| size.checked_add(12))
                != Some(block_size)
            {
                return Err(bad("holding a line block of the wrong size"));
            }
            let file_name = *files
                .get(&file)
                .ok_or_else(|| bad("naming a file it does not list"))?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let code = l.u32().ok_or_else(|| bad("truncated"))?;
                let line = l.u32().ok_or_else(|| bad("truncated"))? & 0x00ff_ffff;
                entries.push(LineRecord {
                    section,
                    offset: offset.wrapping_add(code),
                    file_name,
                    line,
                });
            }
            if columns {
                l.skip(count * 4).ok_or_else(|| bad("truncated"))?;
            }
            lines.extend(entries);
        }
    }
    Ok(lines)
}
