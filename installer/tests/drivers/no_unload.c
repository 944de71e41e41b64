/*
 * A kernel driver that sets no unload routine: once started it cannot be
 * stopped (Windows: ERROR_INVALID_SERVICE_CONTROL, 1052). Built with MinGW
 * by tests/wine.rs; no DDK headers needed.
 */
typedef long NTSTATUS;
struct DRIVER_OBJECT;
struct UNICODE_STRING;

NTSTATUS __stdcall DriverEntry(struct DRIVER_OBJECT *driver, struct UNICODE_STRING *registry_path) {
    (void)driver;
    (void)registry_path;
    return 0; /* STATUS_SUCCESS, and DriverUnload left NULL */
}
