//go:build !linux

package flowtable

func adviseHuge[T any](s []T) {}
