//go:build !linux

package flowtable

func adviseHuge[T any](s []T) {}

func newHuge[T any]() (*T, func()) { return new(T), func() {} }
