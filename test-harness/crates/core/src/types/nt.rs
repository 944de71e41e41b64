//! The emulated kernel's own types: what `dt nt!_POOL_HEADER` and friends
//! show. Layouts are Windows 7 SP1's, as Microsoft's public kernel symbols
//! describe them and kd prints them:
//!
//! - `_POOL_HEADER` x86: the walkthrough's own `dt nt!_POOL_HEADER` output
//!   (test-harness/tests/fixtures/walkthrough-win7-x86.txt); x64: Vergilius
//!   Project, <https://www.vergiliusproject.com/kernels/x64/windows-7/sp1/_POOL_HEADER>.
//! - `_DRIVER_OBJECT`, `_DEVICE_OBJECT`: kd's `dt` output of Windows 7
//!   targets (e.g. OSR and Vergilius, `.../windows-7/sp1/_DEVICE_OBJECT`);
//!   the offsets are also `crate::wdm`'s, which a test checks.
//! - `_DRIVER_EXTENSION`: Geoff Chappell, "`DRIVER_EXTENSION`" (sizes 0x1C /
//!   0x38 for versions 5.1 to 6.1, members up to `FsFilterCallbacks`).
//! - `_UNICODE_STRING`, `_LIST_ENTRY`, `_OSVERSIONINFOW`: wdm.h, unchanged
//!   since Windows 2000.
//!
//! Types these only point to or embed without `dt` needing their members
//! (`_EPROCESS`, `_IRP`, `_KDPC`...) are records without members; embedded
//! ones have their Windows 7 sizes, which the offsets around them fix.

use std::sync::OnceLock;

use super::{Bits, Field, Function, Primitive, Record, RecordKind, Type, TypeId, TypeTable};
use crate::arch::Arch;

/// The `nt` types for `arch`, built once.
#[must_use]
pub fn nt_types(arch: Arch) -> &'static TypeTable {
    static X86: OnceLock<TypeTable> = OnceLock::new();
    static X64: OnceLock<TypeTable> = OnceLock::new();
    match arch {
        Arch::X86 => X86.get_or_init(|| build(arch)),
        Arch::X64 => X64.get_or_init(|| build(arch)),
    }
}

/// Builds records member by member; `p(x)` is a pointer of the arch's size.
struct Builder {
    table: TypeTable,
    pointer_size: u8,
}

impl Builder {
    fn p(&mut self, pointee: TypeId) -> TypeId {
        self.table.pointer(pointee, self.pointer_size)
    }

    fn prim(&mut self, primitive: Primitive) -> TypeId {
        self.table.primitive(primitive)
    }

    /// A record whose members are added later (it is referred to first).
    fn declare(&mut self, name: &str) -> TypeId {
        self.table.add(Type::Record(Record {
            name: name.to_owned(),
            kind: RecordKind::Struct,
            size: 0,
            fields: Vec::new(),
            complete: false,
        }))
    }

    /// A record kd knows but `dt` here never needs the members of.
    fn opaque(&mut self, name: &str, size: u64) -> TypeId {
        let id = self.declare(name);
        self.table.set(
            id,
            Type::Record(Record {
                name: name.to_owned(),
                kind: RecordKind::Struct,
                size,
                fields: Vec::new(),
                complete: size != 0,
            }),
        );
        id
    }

    fn define(&mut self, id: TypeId, kind: RecordKind, size: u64, fields: Vec<Field>) {
        let name = self
            .table
            .record(id)
            .map(|record| record.name.clone())
            .unwrap_or_default();
        self.table.set(
            id,
            Type::Record(Record {
                name,
                kind,
                size,
                fields,
                complete: true,
            }),
        );
    }

    fn function(&mut self, returns: Primitive, parameters: Vec<TypeId>) -> TypeId {
        let returns = self.prim(returns);
        self.table.add(Type::Function(Function {
            returns,
            parameters,
        }))
    }

    fn array(&mut self, element: TypeId, count: u64) -> TypeId {
        let size = self.table.sizeof(element) * count;
        self.table.add(Type::Array {
            element,
            count,
            size,
        })
    }
}

fn field(name: &str, offset: u64, ty: TypeId) -> Field {
    Field {
        name: name.to_owned(),
        offset,
        ty,
        bits: None,
    }
}

fn bitfield(name: &str, offset: u64, ty: TypeId, position: u8, length: u8) -> Field {
    Field {
        name: name.to_owned(),
        offset,
        ty,
        bits: Some(Bits { position, length }),
    }
}

#[allow(clippy::too_many_lines)] // one table per structure, as kd prints them
fn build(arch: Arch) -> TypeTable {
    let x64 = arch == Arch::X64;
    // Offsets that differ by architecture: (x86, x64).
    let at = |x86: u64, x64_offset: u64| if x64 { x64_offset } else { x86 };
    let mut b = Builder {
        table: TypeTable::new(),
        pointer_size: if x64 { 8 } else { 4 },
    };
    let ptr = u64::from(b.pointer_size);

    let void = b.prim(Primitive::VOID);
    let char_ = b.prim(Primitive::CHAR);
    let wchar = b.prim(Primitive::WCHAR);
    let short = b.prim(Primitive::SHORT);
    let ushort = b.prim(Primitive::USHORT);
    let long = b.prim(Primitive::LONG);
    let ulong = b.prim(Primitive::ULONG);

    let list_entry = b.declare("_LIST_ENTRY");
    let unicode_string = b.declare("_UNICODE_STRING");
    let driver_object = b.declare("_DRIVER_OBJECT");
    let device_object = b.declare("_DEVICE_OBJECT");
    let driver_extension = b.declare("_DRIVER_EXTENSION");

    // Only pointed to, or embedded as a whole.
    let eprocess = b.opaque("_EPROCESS", 0);
    let fast_io = b.opaque("_FAST_IO_DISPATCH", 0);
    let irp = b.opaque("_IRP", 0);
    let io_timer = b.opaque("_IO_TIMER", 0);
    let vpb = b.opaque("_VPB", 0);
    let devobj_extension = b.opaque("_DEVOBJ_EXTENSION", 0);
    let client_extension = b.opaque("_IO_CLIENT_EXTENSION", 0);
    let fs_filter_callbacks = b.opaque("_FS_FILTER_CALLBACKS", 0);
    let device_queue = b.opaque("_KDEVICE_QUEUE", at(0x14, 0x28));
    let kdpc = b.opaque("_KDPC", at(0x20, 0x40));
    let kevent = b.opaque("_KEVENT", at(0x10, 0x18));
    let wait_block = b.opaque("_WAIT_CONTEXT_BLOCK", at(0x28, 0x48));

    // _LIST_ENTRY
    let p_list_entry = b.p(list_entry);
    b.define(
        list_entry,
        RecordKind::Struct,
        2 * ptr,
        vec![
            field("Flink", 0, p_list_entry),
            field("Blink", ptr, p_list_entry),
        ],
    );

    // _UNICODE_STRING
    let p_wchar = b.p(wchar);
    b.define(
        unicode_string,
        RecordKind::Struct,
        2 * ptr,
        vec![
            field("Length", 0, ushort),
            field("MaximumLength", 2, ushort),
            field("Buffer", ptr, p_wchar),
        ],
    );

    // _POOL_HEADER
    let pool_header = b.declare("_POOL_HEADER");
    let pool_fields = if x64 {
        let p_eprocess = b.p(eprocess);
        vec![
            bitfield("PreviousSize", 0, ulong, 0, 8),
            bitfield("PoolIndex", 0, ulong, 8, 8),
            bitfield("BlockSize", 0, ulong, 16, 8),
            bitfield("PoolType", 0, ulong, 24, 8),
            field("Ulong1", 0, ulong),
            field("PoolTag", 4, ulong),
            field("ProcessBilled", 8, p_eprocess),
            field("AllocatorBackTraceIndex", 8, ushort),
            field("PoolTagHash", 0xa, ushort),
        ]
    } else {
        vec![
            bitfield("PreviousSize", 0, ushort, 0, 9),
            bitfield("PoolIndex", 0, ushort, 9, 7),
            bitfield("BlockSize", 2, ushort, 0, 9),
            bitfield("PoolType", 2, ushort, 9, 7),
            field("Ulong1", 0, ulong),
            field("PoolTag", 4, ulong),
            field("AllocatorBackTraceIndex", 4, ushort),
            field("PoolTagHash", 6, ushort),
        ]
    };
    b.define(pool_header, RecordKind::Struct, 2 * ptr, pool_fields);

    // _DRIVER_OBJECT
    let p_driver_object = b.p(driver_object);
    let p_device_object = b.p(device_object);
    let p_void = b.p(void);
    let p_driver_extension = b.p(driver_extension);
    let p_unicode_string = b.p(unicode_string);
    let p_fast_io = b.p(fast_io);
    let driver_initialize = b.function(Primitive::LONG, vec![p_driver_object, p_unicode_string]);
    let p_driver_initialize = b.p(driver_initialize);
    let driver_startio = b.function(Primitive::VOID, vec![p_device_object]);
    let p_driver_startio = b.p(driver_startio);
    let driver_unload = b.function(Primitive::VOID, vec![p_driver_object]);
    let p_driver_unload = b.p(driver_unload);
    let driver_dispatch = b.function(Primitive::LONG, vec![p_device_object]);
    let p_driver_dispatch = b.p(driver_dispatch);
    let major_functions = b.array(p_driver_dispatch, crate::wdm::MAJOR_FUNCTIONS);
    b.define(
        driver_object,
        RecordKind::Struct,
        at(0xa8, 0x150),
        vec![
            field("Type", 0, short),
            field("Size", 2, short),
            field("DeviceObject", at(0x04, 0x08), p_device_object),
            field("Flags", at(0x08, 0x10), ulong),
            field("DriverStart", at(0x0c, 0x18), p_void),
            field("DriverSize", at(0x10, 0x20), ulong),
            field("DriverSection", at(0x14, 0x28), p_void),
            field("DriverExtension", at(0x18, 0x30), p_driver_extension),
            field("DriverName", at(0x1c, 0x38), unicode_string),
            field("HardwareDatabase", at(0x24, 0x48), p_unicode_string),
            field("FastIoDispatch", at(0x28, 0x50), p_fast_io),
            field("DriverInit", at(0x2c, 0x58), p_driver_initialize),
            field("DriverStartIo", at(0x30, 0x60), p_driver_startio),
            field("DriverUnload", at(0x34, 0x68), p_driver_unload),
            field("MajorFunction", at(0x38, 0x70), major_functions),
        ],
    );

    // _DRIVER_EXTENSION (Windows XP to 7)
    let add_device = b.function(Primitive::LONG, vec![p_driver_object, p_device_object]);
    let p_add_device = b.p(add_device);
    let p_client_extension = b.p(client_extension);
    let p_fs_filter_callbacks = b.p(fs_filter_callbacks);
    b.define(
        driver_extension,
        RecordKind::Struct,
        at(0x1c, 0x38),
        vec![
            field("DriverObject", 0, p_driver_object),
            field("AddDevice", at(0x04, 0x08), p_add_device),
            field("Count", at(0x08, 0x10), ulong),
            field("ServiceKeyName", at(0x0c, 0x18), unicode_string),
            field("ClientDriverExtension", at(0x14, 0x28), p_client_extension),
            field("FsFilterCallbacks", at(0x18, 0x30), p_fs_filter_callbacks),
        ],
    );

    // _DEVICE_OBJECT, with its anonymous `Queue` union.
    let queue = b.declare("<unnamed-tag>");
    b.define(
        queue,
        RecordKind::Union,
        at(0x28, 0x48),
        vec![
            field("ListEntry", 0, list_entry),
            field("Wcb", 0, wait_block),
        ],
    );
    let p_irp = b.p(irp);
    let p_io_timer = b.p(io_timer);
    let p_vpb = b.p(vpb);
    let p_devobj_extension = b.p(devobj_extension);
    b.define(
        device_object,
        RecordKind::Struct,
        at(0xb8, 0x150),
        vec![
            field("Type", 0, short),
            field("Size", 2, ushort),
            field("ReferenceCount", 4, long),
            field("DriverObject", at(0x08, 0x08), p_driver_object),
            field("NextDevice", at(0x0c, 0x10), p_device_object),
            field("AttachedDevice", at(0x10, 0x18), p_device_object),
            field("CurrentIrp", at(0x14, 0x20), p_irp),
            field("Timer", at(0x18, 0x28), p_io_timer),
            field("Flags", at(0x1c, 0x30), ulong),
            field("Characteristics", at(0x20, 0x34), ulong),
            field("Vpb", at(0x24, 0x38), p_vpb),
            field("DeviceExtension", at(0x28, 0x40), p_void),
            field("DeviceType", at(0x2c, 0x48), ulong),
            field("StackSize", at(0x30, 0x4c), char_),
            field("Queue", at(0x34, 0x50), queue),
            field("AlignmentRequirement", at(0x5c, 0x98), ulong),
            field("DeviceQueue", at(0x60, 0xa0), device_queue),
            field("Dpc", at(0x74, 0xc8), kdpc),
            field("ActiveThreadCount", at(0x94, 0x108), ulong),
            field("SecurityDescriptor", at(0x98, 0x110), p_void),
            field("DeviceLock", at(0x9c, 0x118), kevent),
            field("SectorSize", at(0xac, 0x130), ushort),
            field("Spare1", at(0xae, 0x132), ushort),
            field("DeviceObjectExtension", at(0xb0, 0x138), p_devobj_extension),
            field("Reserved", at(0xb4, 0x140), p_void),
        ],
    );

    // _OSVERSIONINFOW (RTL_OSVERSIONINFOW in wdm.h)
    let os_version_info = b.declare("_OSVERSIONINFOW");
    let csd_version = b.array(wchar, 128);
    b.define(
        os_version_info,
        RecordKind::Struct,
        0x114,
        vec![
            field("dwOSVersionInfoSize", 0, ulong),
            field("dwMajorVersion", 4, ulong),
            field("dwMinorVersion", 8, ulong),
            field("dwBuildNumber", 0xc, ulong),
            field("dwPlatformId", 0x10, ulong),
            field("szCSDVersion", 0x14, csd_version),
        ],
    );

    b.table
}
