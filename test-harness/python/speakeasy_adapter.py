"""Run one kernel driver under Speakeasy and print what it does as JSON lines.

The harness (Rust) judges; this adapter only reports. Each stdout line is one
event object with an "event" key; see test-harness/src/events.rs for the schema.
It also works around Speakeasy 1.5.11's gaps: DbgPrint formats %wZ itself
here, RtlCopyUnicodeString sets the destination Length, the pool APIs are all
implemented here (ExAllocatePool2/3 and ExFreePool2 are missing upstream), and
KeBugCheckEx stops the run. Like the real I/O manager, it runs DriverEntry and
then the unload routine only: no synthetic IRPs, no calls into exports.
"""

import argparse
import json
import struct
import sys


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def fail(kind, message):
    emit("adapter_error", kind=kind, message=message)
    return 0  # the error is reported as an event; exit 0 means "report complete"


POOL_FLAG_NON_PAGED_EXECUTE = 0x80
POOL_FLAG_PAGED = 0x100
TAG_NONE = 0x656E6F4E  # 'None', what ExAllocatePool tags with
CALL_CONV_CDECL = 0  # speakeasy.winenv.arch
CALL_CONV_STDCALL = 1


class Driver:
    """Hooks and bookkeeping for one emulated driver."""

    def __init__(self, se, args):
        self.se = se
        self.fail_allocation = args.fail_allocation
        self.allocations = 0
        self.phase = "entry"

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
        index = first_arg_index
        i = 0

        def next_arg():
            # One at a time: reading past the arguments can leave the mapped stack.
            nonlocal index
            value = emu.get_func_argv(CALL_CONV_CDECL, index + 1)[index]
            index += 1
            return value

        while i < len(fmt):
            c = fmt[i]
            if c != "%":
                out.append(c)
                i += 1
                continue
            j = i + 1
            flags = ""
            while j < len(fmt) and fmt[j] in "-+ #0":
                flags += fmt[j]
                j += 1
            width = ""
            if j < len(fmt) and fmt[j] == "*":
                width = str(next_arg())
                j += 1
            while j < len(fmt) and fmt[j].isdigit():
                width += fmt[j]
                j += 1
            precision = None
            if j < len(fmt) and fmt[j] == ".":
                j += 1
                if j < len(fmt) and fmt[j] == "*":
                    precision = next_arg()
                    j += 1
                else:
                    digits = ""
                    while j < len(fmt) and fmt[j].isdigit():
                        digits += fmt[j]
                        j += 1
                    precision = int(digits or "0")
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
                text = self.read_cstring(emu, next_arg(), wide=wide, limit=precision)
            elif spec in "Z":
                text = self.read_unicode_string(emu, next_arg()) if size == "w" \
                    else self.read_ansi_string(emu, next_arg())
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
            i = j
        return "".join(out)

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

    def allocate(self, emu, api, pool, size, tag):
        caller = self.caller(emu)
        self.allocations += 1
        if self.allocations == self.fail_allocation:
            emit("alloc", phase=self.phase, api=api, pool=pool, size=size, tag=tag,
                 address=0, caller=caller, injected_failure=True)
            return 0
        address = 0
        if size > 0:
            address = emu.mem_map(size, tag="pool.%08x" % tag)
        emit("alloc", phase=self.phase, api=api, pool=pool, size=size, tag=tag,
             address=address, caller=caller, injected_failure=False)
        return address

    def free(self, emu, api, address, tag):
        # The memory stays mapped: a use after free must not fault here when
        # it would not fault in the real kernel either.
        emit("free", phase=self.phase, api=api, address=address, tag=tag,
             caller=self.caller(emu))

    def ex_allocate_pool_tagged(self, emu, api, orig, argv):
        """ExAllocatePoolWithTag, ...WithTagPriority, ...WithQuotaTag: (type, size, tag, ...)."""
        return self.allocate(emu, api.split(".")[-1], argv[0], argv[1], argv[2])

    def ex_allocate_pool(self, emu, api, orig, argv):
        return self.allocate(emu, "ExAllocatePool", argv[0], argv[1], TAG_NONE)

    def pool2_args(self, emu, argv):
        # POOL_FLAGS is 64-bit: two stack slots on x86.
        if self.ptr_size(emu) == 4:
            return argv[0] | (argv[1] << 32), argv[2], argv[3]
        return argv[0], argv[1], argv[2]

    @staticmethod
    def pool_type_from_flags(flags):
        if flags & POOL_FLAG_PAGED:
            return 1  # PagedPool
        if flags & POOL_FLAG_NON_PAGED_EXECUTE:
            return 0  # NonPagedPool (executable)
        return 512  # NonPagedPoolNx

    def ex_allocate_pool2(self, emu, api, orig, argv):
        flags, size, tag = self.pool2_args(emu, argv)
        return self.allocate(emu, api.split(".")[-1], self.pool_type_from_flags(flags), size, tag)

    def ex_free(self, emu, api, orig, argv):
        """ExFreePool(P), ExFreePoolWithTag(P, Tag), ExFreePool2(P, Tag, ...)."""
        self.free(emu, api.split(".")[-1], argv[0], argv[1] if len(argv) > 1 else None)
        return 0

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
        emit("bugcheck", phase=self.phase, code=argv[0], args=args, caller=self.caller(emu))
        emu.stop()
        return 0

    def install(self):
        hooks = [
            ("DbgPrint", self.dbg_print, 1, "cdecl"),
            ("DbgPrintEx", self.dbg_print_ex, 3, "cdecl"),
            ("ExAllocatePoolWithTag", self.ex_allocate_pool_tagged, 3, None),
            ("ExAllocatePoolWithTagPriority", self.ex_allocate_pool_tagged, 4, None),
            ("ExAllocatePoolWithQuotaTag", self.ex_allocate_pool_tagged, 3, None),
            ("ExAllocatePool", self.ex_allocate_pool, 2, None),
            ("ExAllocatePool2", self.ex_allocate_pool2, 3, None),
            ("ExAllocatePool3", self.ex_allocate_pool2, 5, None),
            ("ExFreePoolWithTag", self.ex_free, 2, None),
            ("ExFreePool", self.ex_free, 1, None),
            ("ExFreePool2", self.ex_free, 4, None),
            ("RtlCopyUnicodeString", self.rtl_copy_unicode_string, 2, None),
            ("KeBugCheckEx", self.ke_bug_check, 5, None),
            ("KeBugCheck", self.ke_bug_check, 1, None),
        ]
        for name, callback, argc, conv in hooks:
            call_conv = CALL_CONV_CDECL if conv == "cdecl" else CALL_CONV_STDCALL
            if name in ("ExAllocatePool2", "ExAllocatePool3") and self.se.emu.get_ptr_size() == 4:
                argc += 1  # the 64-bit flags take two slots
            self.se.add_api_hook(guarded(callback), "ntoskrnl", name, argc=argc,
                                 call_conv=call_conv)


def guarded(callback):
    """A hook that fails reports why and ends the emulation, instead of
    letting Speakeasy carry on with a half-done call."""

    def hook(emu, api, orig, argv):
        try:
            return callback(emu, api, orig, argv)
        except Exception as error:
            emit("adapter_error", kind="engine",
                 message="%s hook failed: %s: %s" % (api, type(error).__name__, error))
            emu.stop()
            return 0

    return hook


def error_summary(error):
    """The parts of a Speakeasy run error the harness reports."""
    if not error:
        return None
    summary = {"type": str(error.get("type", "error"))}
    for key in ("pc", "address"):
        if key in error:
            summary[key] = int(str(error[key]), 16)
    if "api_name" in error:
        summary["api"] = error["api_name"]
    if "instr" in error:
        summary["instruction"] = str(error["instr"])
    return summary


def patch_run_order(emu, driver):
    """DriverEntry, then the unload routine if DriverEntry succeeded; nothing else."""
    from speakeasy.windows import kernel

    def next_driver_func(self, drv):
        run = self.curr_run
        if run.type is None:
            return
        status = self.get_return_val() & 0xFFFFFFFF
        run.ret_val = status
        error = error_summary(run.error)
        if error and "api" in error:
            error["caller"] = self.get_ret_address()  # still at the failed call
        if run.type == kernel.EP_DRIVER_UNLOAD:
            emit("unload_return", error=error)
            self.on_emu_complete()
            return
        emit("entry_return", status=None if error else status, error=error,
             unload_routine=int(drv.on_unload or 0))
        if error or status & 0x80000000:
            self.on_emu_complete()
            return
        if not drv.on_unload:
            self.on_emu_complete()
            return
        driver.phase = "unload"
        self.driver_unload(drv)

    import types
    emu.next_driver_func = types.MethodType(next_driver_func, emu)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("driver")
    parser.add_argument("--fail-allocation", type=int, default=0)
    parser.add_argument("--os-version", default="6.1.7601")
    parser.add_argument("--max-instructions", type=int, default=2_000_000)
    parser.add_argument("--timeout", type=int, default=20)
    args = parser.parse_args()

    try:
        import speakeasy
        from speakeasy.windows import kernel  # noqa: F401
    except ImportError as error:
        return fail("missing_tool", "speakeasy is not importable: %s" % error)

    import logging
    logging.disable(logging.CRITICAL)

    major, minor, build = (int(part) for part in args.os_version.split("."))
    config = json.loads(json.dumps(speakeasy.Speakeasy().config))
    config["os_ver"] = {"name": "windows", "major": major, "minor": minor, "build": build}
    config["timeout"] = args.timeout
    config["max_instructions"] = args.max_instructions
    config["max_api_count"] = 100000

    se = speakeasy.Speakeasy(config=config)
    try:
        module = se.load_module(args.driver)
    except Exception as error:  # speakeasy raises bare Exceptions on bad PEs
        return fail("bad_input", "speakeasy could not load the image: %s" % error)

    emu = se.emu
    driver = Driver(se, args)
    driver.install()
    patch_run_order(emu, driver)
    emit("load", arch="x86" if emu.get_ptr_size() == 4 else "x64",
         image_base=module.base, image_size=module.image_size,
         entry_point=module.base + module.ep if module.ep else 0)
    try:
        se.run_module(module, all_entrypoints=True)
    except Exception as error:
        return fail("engine", "speakeasy stopped: %s" % error)
    import os
    ours = "\\Driver\\" + os.path.splitext(os.path.basename(args.driver))[0]
    for drv in getattr(emu, "drivers", []):
        if drv.name.lower() != ours.lower():  # Speakeasy also makes decoy drivers
            continue
        name_ptr = drv.address + (0x38 if emu.get_ptr_size() == 8 else 0x1C)
        emit("driver_object", address=drv.address, name_address=name_ptr,
             name=str(drv.get_reg_path()).split("\\")[-1])
    emit("end")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # never a traceback: one event the harness can report
        emit("adapter_error", kind="engine", message="%s: %s" % (type(error).__name__, error))
        sys.exit(0)
