"""Run one kernel driver under Speakeasy and print what it does as JSON lines.

The harness (Rust) judges; this adapter only reports. Each stdout line is one
event object with an "event" key; see test-harness/crates/core/src/events.rs for the schema.
Pool calls are reported raw (argument slots and result): what they mean is
the harness's table (test-harness/crates/core/src/pool_api.rs), not this file's.
It also works around Speakeasy 1.5.11's gaps: DbgPrint formats %wZ itself
here, RtlCopyUnicodeString sets the destination Length, the pool APIs are all
implemented here (ExAllocatePool2/3 and ExFreePool2 are missing upstream), and
KeBugCheckEx stops the run. Like the real I/O manager, it runs DriverEntry and
then the unload routine only: no synthetic IRPs, no calls into exports.
"""

import argparse
import json
import os
import struct
import sys
import time

STARTED = time.monotonic()


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def gap(kind, phase=None, caller=None, **fields):
    """The engine could not do its part: the harness will not judge the run,
    so the report ends here (exit 0 means "report complete"). The process
    ends at once: Unicorn 1.0.2 does not always honour a stop requested from
    inside a kernel call, and the driver must not run on unobserved."""
    fields["kind"] = kind
    emit("gap", phase=phase, gap=fields, caller=caller)
    sys.stdout.flush()
    os._exit(0)


CALL_CONV_CDECL = 0  # speakeasy.winenv.arch
CALL_CONV_STDCALL = 1
# Argument slots of each pool routine (x86: a 64-bit POOL_FLAGS takes two).
POOL_ROUTINES = {
    "ExAllocatePoolWithTag": 3,
    "ExAllocatePoolWithTagPriority": 4,
    "ExAllocatePoolWithQuotaTag": 3,
    "ExAllocatePool": 2,
    "ExAllocatePoolWithQuota": 2,
    "ExAllocatePoolZero": 3,
    "ExAllocatePool2": 3,
    "ExAllocatePool3": 5,
    "ExFreePoolWithTag": 2,
    "ExFreePool": 1,
    "ExFreePool2": 4,
}
WIDE_FLAGS = ("ExAllocatePool2", "ExAllocatePool3")
# Unicorn's error numbers (unicorn_const.py) for what the CPU itself refused.
UC_ERR_NOMEM = 1
UC_ERR_INSN_INVALID = 10
# x86 exception vectors Speakeasy reports as "unhandled_interrupt".
VECTOR_FAULTS = {0: "divide_error", 3: "breakpoint", 6: "illegal_instruction",
                 13: "privileged_instruction"}
ACCESS_FAULTS = {"invalid_read": "read", "invalid_write": "write",
                 "invalid_protect_write": "write", "invalid_fetch": "execute"}
# DbgPrint formats into a 512-byte buffer: at most 511 characters and the NUL
# ("any single call to DbgPrint will only transmit 512 bytes", Microsoft's
# DbgPrint documentation). Longer output is cut, as Windows cuts it.
DBGPRINT_MAX = 511
# Windows 7's kernel stacks (KERNEL_STACK_SIZE): 12 KiB on x86, 24 KiB on x64
# ("How do I keep my driver from running out of kernel-mode stack?",
# learn.microsoft.com previous-versions dn613940), by pointer size. Speakeasy
# would give the image's SizeOfStackCommit (4 KiB for MinGW's drivers).
KERNEL_STACK = {4: 0x3000, 8: 0x6000}
# The stack Speakeasy runs the driver on: (lowest address, top), set when
# it is allocated. An access in the page below it is a stack overflow.
STACK = {}
# Instructions that change the processor's system state, which Unicorn
# carries out without a real processor's checks and which no engine here
# models (capstone mnemonics), with what Windows would face. The native
# engine's table (machine.rs, system_instruction) says the same.
SYSTEM_INSTRUCTIONS = {
    "rdmsr": "which MSRs exist and what writing them does depends on the processor "
             "(one it lacks raises #GP)",
    "wrmsr": "which MSRs exist and what writing them does depends on the processor "
             "(one it lacks raises #GP)",
    "lgdt": "it replaces a descriptor table that Windows' interrupts and faults rely on",
    "lidt": "it replaces a descriptor table that Windows' interrupts and faults rely on",
    "lldt": "it replaces a descriptor table that Windows' interrupts and faults rely on",
    "ltr": "it replaces a descriptor table that Windows' interrupts and faults rely on",
    "syscall": "it takes the system-call path from kernel mode",
    "sysenter": "it takes the system-call path from kernel mode",
    "sysret": "it takes the system-call path from kernel mode",
    "sysexit": "it takes the system-call path from kernel mode",
}
CONTROL_REGISTER_WRITE = "it changes the processor's paging or protection under Windows"
HLT_DETAIL = ("interrupts are enabled and Windows resumes at the next interrupt, which "
              "this engine never raises")
# The emulated pool: carved from regions mapped once (mapping each block
# through Speakeasy costs time linear in the blocks already mapped, so many
# allocations would cost quadratic time), POOL_REGION bytes at a time, at
# most POOL_LIMIT bytes in all.
POOL_REGION = 16 << 20
POOL_LIMIT = 1 << 30
POOL_ALIGN = 16  # block alignment, and the room a pool header takes before each block


class EngineLimit(Exception):
    """The adapter reached one of its own documented limits."""


class Driver:
    """Hooks and bookkeeping for one emulated driver."""

    def __init__(self, se, args):
        self.se = se
        self.fail_allocation = args.fail_allocation
        self.allocations = 0
        self.phase = "entry"
        self.returned = False  # the current routine returned (or faulted)
        self.stopped = False  # the run ended for good (bug check, failed hook)
        self.uc_errno = None
        # time.monotonic() when the run must end: first the start-up's
        # deadline, then, from DriverEntry's first instruction, the driver's.
        self.deadline = args.deadline
        self.entered = False  # DriverEntry has started
        self.timeout = args.timeout
        self.region_next = 0  # next free byte in the current pool region
        self.region_end = 0
        self.pool_mapped = 0  # bytes of pool mapped so far
        self.request_limit = [int(limit) for limit in args.pool_request_limit.split(",")]

    # -- helpers -----------------------------------------------------------

    def ptr_size(self, emu):
        return emu.get_ptr_size()

    def read_ptr(self, emu, address):
        size = self.ptr_size(emu)
        return int.from_bytes(emu.mem_read(address, size), "little")

    def read_unicode_string(self, emu, address):
        if not address:
            return "(null)"
        length, _max = struct.unpack("<HH", emu.mem_read(address, 4))
        buffer = self.read_ptr(emu, address + self.ptr_size(emu))
        if not buffer or not length:
            return ""
        return emu.mem_read(buffer, length).decode("utf-16-le", "replace")

    def read_cstring(self, emu, address, wide=False, limit=None):
        if not address:
            return "(null)"
        unit = 2 if wide else 1
        out = bytearray()
        while limit is None or len(out) // unit < limit:
            chunk = emu.mem_read(address + len(out), unit)
            if chunk == b"\0" * unit:
                break
            out += chunk
            if len(out) > 65536:
                break
        return out.decode("utf-16-le" if wide else "latin-1", "replace")

    def caller(self, emu):
        return emu.get_ret_address()

    # -- DbgPrint ----------------------------------------------------------

    def format(self, emu, fmt, first_arg_index):
        """printf as the kernel's DbgPrint does it, including %wZ and %Z."""
        out = []
        length = 0  # characters in out; formatting stops past DBGPRINT_MAX
        index = first_arg_index
        i = 0

        def next_arg():
            # One at a time: reading past the arguments can leave the mapped stack.
            nonlocal index
            value = emu.get_func_argv(CALL_CONV_CDECL, index + 1)[index]
            index += 1
            return value

        while i < len(fmt) and length <= DBGPRINT_MAX:
            c = fmt[i]
            if c != "%":
                out.append(c)
                length += 1
                i += 1
                continue
            j = i + 1
            flags = ""
            while j < len(fmt) and fmt[j] in "-+ #0":
                flags += fmt[j]
                j += 1
            width = ""
            if j < len(fmt) and fmt[j] == "*":
                star = next_arg() & 0xFFFFFFFF
                star -= (star >> 31) << 32  # an int: negative means left-justified
                if star < 0:
                    flags += "-"
                width = str(abs(star))
                j += 1
            while j < len(fmt) and fmt[j].isdigit():
                width += fmt[j]
                j += 1
            # No field is wider than what DbgPrint can transmit.
            width = str(min(int(width), DBGPRINT_MAX + 1)) if width else ""
            precision = None
            if j < len(fmt) and fmt[j] == ".":
                j += 1
                if j < len(fmt) and fmt[j] == "*":
                    precision = next_arg() & 0xFFFFFFFF
                    precision = None if precision >> 31 else min(precision, 65536)
                    j += 1
                else:
                    digits = ""
                    while j < len(fmt) and fmt[j].isdigit():
                        digits += fmt[j]
                        j += 1
                    precision = min(int(digits or "0"), 65536)
            size = ""
            for prefix in ("I64", "I32", "ll", "hh", "l", "h", "w", "I", "z"):
                if fmt.startswith(prefix, j):
                    size = prefix
                    j += len(prefix)
                    break
            if j >= len(fmt):
                out.append(fmt[i:])
                break
            spec = fmt[j]
            j += 1
            if spec == "%":
                text = "%"
            elif spec in "sS":
                wide = (spec == "S") != (size in ("w", "l"))
                limit = DBGPRINT_MAX + 1 if precision is None else min(precision, DBGPRINT_MAX + 1)
                text = self.read_cstring(emu, next_arg(), wide=wide, limit=limit)
            elif spec in "Z":
                text = self.read_counted_string(emu, next_arg(), wide=size in ("w", "l"))
            elif spec in "cC":
                text = chr(next_arg() & 0xFFFF)
            elif spec in "diuxXpo":
                value = next_arg()
                bits = 8 * self.ptr_size(emu) if spec == "p" or size in ("I", "z") else 32
                if size in ("I64", "ll"):
                    if self.ptr_size(emu) == 4:
                        value |= next_arg() << 32
                    bits = 64
                value &= (1 << bits) - 1
                if spec in "di" and value >> (bits - 1):
                    value -= 1 << bits
                pyspec = {"i": "d", "u": "d", "p": "X"}.get(spec, spec)
                if spec == "p":
                    width = width or str(bits // 4)
                    flags += "0"
                text = format(value, flags.replace("#", "") + width + pyspec)
                if "#" in flags and spec in "xX":
                    text = "0x" + text
                width = ""
            else:
                text = fmt[i:j]
            if width and len(text) < int(width):
                text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width))
            out.append(text)
            length += len(text)
            i = j
        return "".join(out)[:DBGPRINT_MAX]

    def read_counted_string(self, emu, address, wide):
        """%Z and %wZ (or %lZ): "(null)" for a NULL string or Buffer, as the C
        runtime's output.c prints a counted string."""
        if not address or not self.read_ptr(emu, address + self.ptr_size(emu)):
            return "(null)"
        return self.read_unicode_string(emu, address) if wide else self.read_ansi_string(emu, address)

    def read_ansi_string(self, emu, address):
        if not address:
            return "(null)"
        length, _max = struct.unpack("<HH", emu.mem_read(address, 4))
        buffer = self.read_ptr(emu, address + self.ptr_size(emu))
        return emu.mem_read(buffer, length).decode("latin-1") if buffer and length else ""

    # Speakeasy passes no argv for variadic APIs on x86: read the stack here.
    def dbg_print(self, emu, api, orig, argv):
        fmt = self.read_cstring(emu, emu.get_func_argv(CALL_CONV_CDECL, 1)[0])
        text = self.format(emu, fmt, 1)
        emit("debug_print", phase=self.phase, text=text)
        return 0

    def dbg_print_ex(self, emu, api, orig, argv):
        component, level, fmt = emu.get_func_argv(CALL_CONV_CDECL, 3)
        text = self.format(emu, self.read_cstring(emu, fmt), 3)
        emit("debug_print", phase=self.phase, text=text, component=component, level=level)
        return 0

    # -- pool --------------------------------------------------------------

    def pool_call(self, emu, api, orig, argv):
        """Any pool routine: allocate or free, and report the raw call."""
        name = api.split(".")[-1]
        slots = list(argv)
        caller = self.caller(emu)
        if name.startswith("ExFree"):
            # The memory stays mapped: a use after free must not fault here
            # when it would not fault in the real kernel either.
            emit("pool_call", phase=self.phase, routine=name, args=slots, result=0,
                 caller=caller, injected_failure=False)
            return 0
        size_slot = 2 if (name in WIDE_FLAGS and self.ptr_size(emu) == 4) else 1
        size = slots[size_slot]
        self.allocations += 1
        injected = self.allocations == self.fail_allocation
        address = 0
        # Windows has no pool that large: NULL, and the driver's own failure
        # path runs (ExAllocatePoolWithTag and ExAllocatePool2 both return
        # NULL when the request cannot be satisfied).
        limit = self.request_limit[0 if self.ptr_size(emu) == 4 else 1]
        if 0 < size < limit and not injected:
            address = self.pool_alloc(emu, size)
        emit("pool_call", phase=self.phase, routine=name, args=slots, result=address,
             caller=caller, injected_failure=injected)
        return address

    def pool_alloc(self, emu, size):
        """A block of pool: carved from a region mapped once, so that each
        allocation costs the same however many came before."""
        need = POOL_ALIGN + ((size + POOL_ALIGN - 1) & ~(POOL_ALIGN - 1))
        if self.region_next + need > self.region_end:
            region = max(POOL_REGION, (need + 0xFFF) & ~0xFFF)
            if self.pool_mapped + region > POOL_LIMIT:
                raise EngineLimit(
                    "the emulated pool holds at most %d MiB and the driver asked for 0x%x "
                    "bytes more" % (POOL_LIMIT >> 20, size))
            self.region_next = emu.mem_map(region, tag="pool")
            self.region_end = self.region_next + region
            self.pool_mapped += region
        address = self.region_next + POOL_ALIGN  # room for the pool header
        self.region_next += need
        return address

    # -- other fixes ---------------------------------------------------------

    def rtl_copy_unicode_string(self, emu, api, orig, argv):
        destination, source = argv[0], argv[1]
        ptr = self.ptr_size(emu)
        _length, capacity = struct.unpack("<HH", emu.mem_read(destination, 4))
        if not source:
            emu.mem_write(destination, b"\0\0")
            return 0
        length, _ = struct.unpack("<HH", emu.mem_read(source, 4))
        copy = min(length, capacity)
        src_buffer = self.read_ptr(emu, source + ptr)
        dst_buffer = self.read_ptr(emu, destination + ptr)
        if copy:
            emu.mem_write(dst_buffer, emu.mem_read(src_buffer, copy))
        if copy + 2 <= capacity:
            emu.mem_write(dst_buffer + copy, b"\0\0")
        emu.mem_write(destination, struct.pack("<H", copy))
        return 0

    def ke_bug_check(self, emu, api, orig, argv):
        """KeBugCheckEx(Code, P1..P4) or KeBugCheck(Code): the machine stops."""
        args = (list(argv[1:5]) + [0, 0, 0, 0])[:4]
        emit("bug_check_call", phase=self.phase, code=argv[0] & 0xFFFFFFFF, args=args,
             caller=self.caller(emu))
        self.stopped = True
        emu.stop()
        return 0

    def wdf_version_bind(self, emu, api, orig, argv):
        """Speakeasy binds KMDF with a function table of a few dozen of its
        hundreds of entries; the rest jump to 0. The run cannot be judged."""
        gap("kmdf", phase=self.phase, caller=self.caller(emu), routine="WdfVersionBind")
        self.stopped = True
        emu.stop()
        return 0xC0000001  # STATUS_UNSUCCESSFUL, never seen: the run ends here

    def install(self):
        hooks = [
            ("DbgPrint", self.dbg_print, 1, "cdecl"),
            ("DbgPrintEx", self.dbg_print_ex, 3, "cdecl"),
            ("RtlCopyUnicodeString", self.rtl_copy_unicode_string, 2, None),
            ("KeBugCheckEx", self.ke_bug_check, 5, None),
            ("KeBugCheck", self.ke_bug_check, 1, None),
        ]
        wide = self.se.emu.get_ptr_size() == 4
        for name, slots in POOL_ROUTINES.items():
            hooks.append((name, self.pool_call, slots + (wide and name in WIDE_FLAGS), None))
        for name, callback, argc, conv in hooks:
            call_conv = CALL_CONV_CDECL if conv == "cdecl" else CALL_CONV_STDCALL
            self.se.add_api_hook(guarded(callback, self), "ntoskrnl", name, argc=argc,
                                 call_conv=call_conv)
        self.se.add_api_hook(guarded(self.wdf_version_bind, self), "wdfldr", "WdfVersionBind",
                             argc=4, call_conv=CALL_CONV_STDCALL)


def guarded(callback, driver):
    """A hook that fails reports why and ends the emulation, instead of
    letting Speakeasy carry on with a half-done call."""

    def hook(emu, api, orig, argv):
        out_of_time(emu, driver)
        if driver.stopped:
            return 0
        try:
            return callback(emu, api, orig, argv)
        except Exception as error:
            report_exception(driver, error, driver.caller(emu), api)
            driver.stopped = True
            emu.stop()
            return 0

    return hook


def report_exception(driver, error, caller, routine):
    """An exception inside an engine routine the driver called: a gap."""
    if isinstance(error, EngineLimit):
        gap("engine_limit", phase=driver.phase, caller=caller,
            detail="%s (in %s)" % (error, routine))
    elif isinstance(error, MemoryError) or getattr(error, "errno", None) == UC_ERR_NOMEM:
        gap("engine_limit", phase=driver.phase, caller=caller,
            detail="the engine process ran out of memory (its cap is %s) in %s"
            % (memory_cap(), routine))
    else:
        gap("engine_error", phase=driver.phase, caller=caller, routine=routine,
            message="%s: %s" % (type(error).__name__, error))


def memory_cap():
    import resource
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return "none" if soft == resource.RLIM_INFINITY else "%d MiB of address space" % (soft >> 20)


def out_of_time(emu, driver):
    """Ends the run at the deadline. Unicorn's own timer can miss it while
    the driver keeps calling into the kernel, so every call checks too."""
    if driver.stopped or time.monotonic() < driver.deadline:
        return
    emit("stopped", phase=driver.phase,
         limit={"kind": "time", "seconds": int(round(driver.timeout))})
    # Unicorn 1.0.2 does not always honour a stop requested from inside a
    # kernel call (nor its own timer) while the driver keeps calling: the
    # report is complete, so end the process here.
    emit("end")
    sys.stdout.flush()
    os._exit(0)


def start_up_deadline(driver):
    """Ends the run as the engine's failure when the deadline passed before
    DriverEntry started: the driver never ran, so it cannot have hung."""
    if time.monotonic() >= driver.deadline:
        gap("engine_limit",
            detail="Speakeasy did not start DriverEntry within the --timeout of %g s "
                   "(starting Python, importing Speakeasy and loading the image took it all)"
                   % driver.timeout)


def hex_field(error, key):
    value = error.get(key)
    return int(str(value), 16) if value is not None else None


def report_error(emu, driver, error):
    """Reports why a routine's run ended early: a CPU fault, or a gap."""
    phase = driver.phase
    kind = str(error.get("type", ""))
    pc = hex_field(error, "pc")
    apis = getattr(emu.curr_run, "apis", None) or []
    last = apis[-1] if apis else None
    if last and last["api_name"].split(".")[-1] not in POOL_ROUTINES:
        # The engine routine called last, so that a fault right after it is
        # traced to the engine and not blamed on the driver.
        emit("call", phase=phase, routine=last["api_name"], caller=int(last["pc"], 16))
    address = hex_field(error, "address")
    if kind in ACCESS_FAULTS and in_stack_guard(address):
        # No stack left for the fault's frame: a double fault on Windows.
        emit("fault", phase=phase, kind="stack_overflow", pc=pc, address=address)
    elif kind in ACCESS_FAULTS:
        emit("fault", phase=phase, kind=ACCESS_FAULTS[kind], pc=pc, address=address)
    elif kind == "unhandled_interrupt" and error.get("interrupt_num") in VECTOR_FAULTS:
        emit("fault", phase=phase, kind=VECTOR_FAULTS[error["interrupt_num"]], pc=pc,
             address=None)
    elif driver.uc_errno == UC_ERR_INSN_INVALID:
        emit("fault", phase=phase, kind="illegal_instruction", pc=pc, address=None)
    elif kind == "unsupported_api":
        gap("missing_routine", phase=phase, caller=emu.get_ret_address(),
            routine=error.get("api_name", "an API"))
    elif kind == "max_api_count":
        gap("engine_limit", phase=phase, caller=emu.get_ret_address(),
            detail="Speakeasy stops a driver routine after %s calls to the kernel "
            "(--max-kernel-calls)" % error.get("count"))
    else:
        gap("engine_error", phase=phase, caller=int(last["pc"], 16) if last else None,
            message=kind, routine=last["api_name"] if last else None)


def in_stack_guard(address):
    """Whether an access at `address` hit the page below the driver's stack."""
    if address is None or "low" not in STACK:
        return False
    return STACK["low"] - 0x1000 <= address < STACK["low"]


def use_kernel_mode_and_stack():
    """Speakeasy runs an image as a user-mode program unless it imports from
    a kernel module (or has no entry point); the harness only runs drivers,
    so every image runs in kernel mode here. Its stack is Windows' kernel
    stack, with nothing mapped in the page below it."""
    from speakeasy.windows import common, kernel

    common.PeFile.is_driver = lambda self: True
    original = kernel.WinKernelEmulator.alloc_stack

    def alloc_stack(self, size):
        size = KERNEL_STACK[self.get_ptr_size()]
        top, pointer = original(self, size)
        STACK["low"] = top - size
        STACK["top"] = top
        # The guard page: reserved, so that Speakeasy maps nothing there later.
        self.mem_reserve(0x1000, base=top - size - 0x1000, tag="emu.stack.guard")
        return top, pointer

    kernel.WinKernelEmulator.alloc_stack = alloc_stack


def hook_system_instructions(emu, module):
    """A code hook on each system instruction in the driver's executable
    sections (a linear sweep): reaching one ends the run as one that cannot
    be judged, naming the instruction."""
    import capstone

    mode = capstone.CS_MODE_32 if emu.get_ptr_size() == 4 else capstone.CS_MODE_64
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, mode)
    for section in module.sections:
        if not section.Characteristics & 0x20000000:  # IMAGE_SCN_MEM_EXECUTE
            continue
        start = module.base + section.VirtualAddress
        code = emu.mem_read(start, max(section.Misc_VirtualSize, 0) or section.SizeOfRawData)
        for insn in disassembler.disasm_lite(bytes(code), start):
            address, _size, mnemonic, operands = insn
            detail = SYSTEM_INSTRUCTIONS.get(mnemonic)
            if detail is None and mnemonic == "mov" and operands.startswith("cr") \
                    and not operands.startswith("cr8"):
                detail = CONTROL_REGISTER_WRITE
            if detail is None:
                continue
            text = (mnemonic + " " + operands).strip()
            emu.add_code_hook(system_instruction_hook(text, detail), begin=address,
                              end=address)


def system_instruction_hook(text, detail):
    def hook(emu, address, size, ctx):
        gap("instruction", phase=DRIVER[0].phase if DRIVER else None, caller=address,
            instruction=text, detail=detail)
    return hook


def hook_kernel_code_writes(emu, module):
    """The driver's function imports point at Speakeasy's stand-ins for
    kernel code, which Speakeasy maps writable. Windows maps the kernel's
    code read-only: a write there is bug check 0xBE (the harness's tracker
    decides), reported here as the fault it would be."""
    size = emu.get_ptr_size()
    targets = set()
    for slot in module.imports:
        if slot in emu.global_data:  # a data import: the variable, not code
            continue
        targets.add(int.from_bytes(emu.mem_read(slot, size), "little"))
    if not targets:
        return

    def hook(emu, access, address, width, value, ctx):
        if not any(target <= address < target + 16 for target in targets):
            return True
        emit("fault", phase=DRIVER[0].phase if DRIVER else None, kind="read_only_write",
             pc=emu.get_pc(), address=address)
        emit("end")
        sys.stdout.flush()
        os._exit(0)

    emu.add_mem_write_hook(hook, begin=min(targets), end=max(targets) + 16)


# The one Driver of the run, for hooks that Speakeasy calls without it.
DRIVER = []


def halted(emu, driver):
    """Unicorn ends a run at `hlt` with no error: with interrupts enabled
    Windows resumes at the next interrupt, which this engine never raises
    (cannot judge); with them disabled the processor never resumes (a hang
    the driver caused). True when that is what ended the run."""
    pc = emu.get_pc()
    try:
        byte = emu.mem_read(pc - 1, 1)
    except Exception:
        return False
    if byte != b"\xf4":
        return False
    import unicorn.x86_const as x86
    flags = emu.emu_eng.emu.reg_read(x86.UC_X86_REG_EFLAGS)
    if flags & 0x200:
        gap("instruction", phase=driver.phase, caller=pc - 1, instruction="hlt",
            detail=HLT_DETAIL)
    emit("stopped", phase=driver.phase, limit={"kind": "halted", "pc": pc - 1})
    return True


def use_registry_path(path):
    """The registry path DriverEntry gets: the harness's, for the Windows
    version it emulates, instead of Speakeasy's CurrentControlSet one."""
    from speakeasy.windows import objman

    def create_reg_path(self, name):
        original(self, name)
        text = path + "\x00"
        buf = text.encode("utf-16le")
        us = self.nt_types.UNICODE_STRING(self.emu.get_ptr_size())
        addr = self.emu.mem_map(self.sizeof(us) + len(buf), tag="emu.object.reg_path")
        us.Length = len(buf) - 2
        us.MaximumLength = len(buf)
        us.Buffer = addr + self.sizeof(us)
        self.emu.mem_write(addr, self.get_bytes(us))
        self.emu.mem_write(us.Buffer, buf)
        self.reg_path = path
        self.reg_path_ptr = addr

    original = objman.Driver.create_reg_path
    objman.Driver.create_reg_path = create_reg_path


def patch_run_order(emu, driver):
    """DriverEntry, then the unload routine if DriverEntry succeeded; nothing else."""
    from speakeasy.windows import kernel

    def next_driver_func(self, drv):
        run = self.curr_run
        if run.type is None:
            return
        if driver.stopped:  # a bug check or a failed hook already said why
            self.on_emu_complete()
            return
        if run.error:
            report_error(self, driver, run.error)
            driver.returned = True
            self.on_emu_complete()
            return
        status = self.get_return_val() & 0xFFFFFFFF
        run.ret_val = status
        driver.returned = True
        if run.type == kernel.EP_DRIVER_UNLOAD:
            emit("unload_return")
            self.on_emu_complete()
            return
        emit("driver_object", address=drv.address, name=drv.name.split("\\")[-1])
        emit("entry_return", status=status, unload_routine=int(drv.on_unload or 0))
        if status & 0x80000000 or not drv.on_unload:
            self.on_emu_complete()
            return
        driver.phase = "unload"
        driver.returned = False
        # Speakeasy restarts its clock for each routine: give the unload
        # routine only what is left of the run's time.
        self.timeout = max(driver.deadline - time.monotonic(), 0.001)
        self.driver_unload(drv)

    import types
    emu.next_driver_func = types.MethodType(next_driver_func, emu)

    # Speakeasy hands a finished run to the driver's bookkeeping only when
    # the CPU stopped inside the driver's image: a fault at an address
    # outside every module (an entry point beyond the image) would be
    # dropped, and the run would look hung. Report it here instead.
    on_run_complete = emu.on_run_complete

    def on_run_complete_reporting(self):
        run = self.curr_run
        outside = not any(drv.pe == self.curr_mod for drv in self.drivers)
        if run.type is not None and run.error and outside and not driver.stopped \
                and not driver.returned:
            report_error(self, driver, run.error)
            driver.returned = True
            self.on_emu_complete()
            return None
        return on_run_complete()

    emu.on_run_complete = types.MethodType(on_run_complete_reporting, emu)

    # Keep Unicorn's own error number: Speakeasy only keeps its text.
    engine = emu.emu_eng
    start = engine.start

    def start_and_keep_errno(*args, **kwargs):
        # Drivers run with interrupts enabled (IF), as Windows runs
        # DriverEntry and the unload routine at PASSIVE_LEVEL; Speakeasy
        # leaves IF clear, and `hlt` must tell the two apart.
        import unicorn.x86_const as x86
        flags = engine.emu.reg_read(x86.UC_X86_REG_EFLAGS)
        engine.emu.reg_write(x86.UC_X86_REG_EFLAGS, flags | 0x200)
        try:
            return start(*args, **kwargs)
        except Exception as error:
            driver.uc_errno = getattr(error, "errno", None)
            raise

    def start_timed(addr, timeout=0, count=0):
        if not driver.entered:
            # The driver's time starts with DriverEntry: what start-up took
            # is the engine's, never reported as the driver's.
            start_up_deadline(driver)
            driver.entered = True
            driver.deadline = time.monotonic() + driver.timeout
            emu.timeout = timeout = driver.timeout
        return start_and_keep_errno(addr, timeout=timeout, count=count)

    engine.start = start_timed
    # Fractions of a second left must reach Unicorn as whole microseconds
    # (0 would mean no limit at all).
    engine._sec_to_usec = lambda seconds: max(int(seconds * 1_000_000), 1)

    # An exception inside one of Speakeasy's own routines (ApiEmuError for an
    # unsupported information class, say) is the engine's failure, reported
    # with the routine and the driver's call site while both are known.
    api = emu.api
    call_api_func = api.call_api_func

    def call_and_report(mod, func, argv, ctx={}):
        out_of_time(emu, driver)
        try:
            return call_api_func(mod, func, argv, ctx=ctx)
        except Exception as error:
            if not driver.stopped:
                report_exception(driver, error, emu.get_ret_address(),
                                 (ctx or {}).get("func_name", getattr(func, "__name__", None)))
                driver.stopped = True
            raise

    api.call_api_func = call_and_report


def relocate_unmappable_images():
    """Windows maps a kernel image wherever it has room and applies its base
    relocations (WRK MiLoadSystemImage calls LdrRelocateImage when the image
    is not at its ImageBase), so an ImageBase whose image would run past the
    top of the address space still loads. Speakeasy maps an image at its
    ImageBase (relocating only an ImageBase of 0), so such an image is
    relocated here first, to the address Speakeasy uses for that case."""
    from speakeasy.windows import common

    original = common.PeFile.__init__

    def init(self, path=None, data=None, *args, **kwargs):
        original(self, path, data, *args, **kwargs)
        top = 1 << (8 * self.ptr_size)
        if self.base + self.image_size <= top:
            return
        # The kernel's fixups wrap modulo the pointer size; pefile's do not.
        set_qword, set_dword = self.set_qword_at_rva, self.set_dword_at_rva
        self.set_qword_at_rva = lambda rva, value: set_qword(rva, value % (1 << 64))
        self.set_dword_at_rva = lambda rva, value: set_dword(rva, value % (1 << 32))
        try:
            self.relocate_image(common.DEFAULT_LOAD_ADDR)
        finally:
            del self.set_qword_at_rva, self.set_dword_at_rva
        kept = (self.path, self.hash, self.file_size)
        original(self, None, self.write(), *args, **kwargs)
        self.path, self.hash, self.file_size = kept

    common.PeFile.__init__ = init


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("driver")
    parser.add_argument("--fail-allocation", type=int, default=0)
    parser.add_argument("--os-version", default="6.1.7601")
    parser.add_argument("--max-instructions", type=int, default=2_000_000)
    parser.add_argument("--max-api-calls", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=20,
                        help="seconds for the whole run, loading included")
    parser.add_argument("--registry-path", default=None)
    # "X86,X64": pool requests this large get NULL from Windows on each
    # (harness_core::nt::pool_request_limit).
    parser.add_argument("--pool-request-limit", default="%d,%d" % (2 << 30, 128 << 30))
    args = parser.parse_args()
    args.deadline = STARTED + args.timeout

    try:
        import speakeasy
        from speakeasy.windows import kernel  # noqa: F401
    except ImportError as error:
        return gap("engine_error", message="speakeasy is not importable: %s" % error)

    import logging
    logging.disable(logging.CRITICAL)

    major, minor, build = (int(part) for part in args.os_version.split("."))
    config = json.loads(json.dumps(speakeasy.Speakeasy().config))
    config["os_ver"] = {"name": "windows", "major": major, "minor": minor, "build": build}
    config["timeout"] = max(1, int(args.timeout))  # replaced by the time left, below
    config["max_instructions"] = args.max_instructions
    # API calls Speakeasy allows per routine before it stops the driver;
    # reaching it is reported as the engine's limit.
    config["max_api_count"] = args.max_api_calls

    use_kernel_mode_and_stack()
    if args.registry_path:
        use_registry_path(args.registry_path)
    se = speakeasy.Speakeasy(config=config)
    relocate_unmappable_images()
    try:
        module = se.load_module(args.driver)
    except Exception as error:  # speakeasy raises bare Exceptions on bad PEs
        return gap("engine_error", message="speakeasy could not load the image: %s" % error)

    emu = se.emu
    driver = Driver(se, args)
    DRIVER.append(driver)
    start_up_deadline(driver)
    driver.install()
    hook_system_instructions(emu, module)
    hook_kernel_code_writes(emu, module)
    patch_run_order(emu, driver)
    emit("load", arch="x86" if emu.get_ptr_size() == 4 else "x64",
         image_base=module.base, image_size=module.image_size,
         entry_point=module.base + module.ep if module.ep else 0)
    try:
        se.run_module(module, all_entrypoints=True)
    except Exception as error:
        if driver.stopped:
            return 0  # already reported
        report_exception(driver, error, None, "speakeasy's run")
        return 0
    if not driver.returned and not driver.stopped and halted(emu, driver):
        pass
    elif not driver.returned and not driver.stopped:
        # Speakeasy ends a run quietly when a budget runs out (Unicorn's
        # instruction count, or its timeout): the clock tells which.
        if time.monotonic() < driver.deadline - 0.05:
            limit = {"kind": "instructions", "count": args.max_instructions}
        else:
            limit = {"kind": "time", "seconds": int(round(args.timeout))}
        emit("stopped", phase=driver.phase, limit=limit)
    emit("end")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # never a traceback: one event the harness can report
        gap("engine_error", message="%s: %s" % (type(error).__name__, error))
        sys.exit(0)
