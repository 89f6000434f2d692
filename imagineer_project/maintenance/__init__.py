"""Upkeep that keeps a library healthy for years: retention purges, storage
reconcile, disk usage. Each pass runs as a MaintenanceRun with a report.

Apps register their passes and the storage they own in `registry`; this
package names no app above it.
"""
