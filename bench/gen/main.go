// Command gen writes the benchmark data sets, the same bytes every time:
//
//	go run ./bench/gen mixed DIR    1 GiB big.bin, 8 × 64 MiB, 9,000 files of 4 KiB to 128 KiB
//	go run ./bench/gen small DIR    100,000 files of 100 to 3,100 bytes in 1,000 directories
//	go run ./bench/gen change DIR   changes about 1 % of DIR, by files and by bytes: rewrites
//	                                every 100th file under 1 MiB (path order) with new bytes
//	                                of the same size, and 16 MiB in the middle of
//	                                media/m0.bin in place; prints the files and bytes changed
package main

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gen mixed|small|change DIR")
		os.Exit(2)
	}
	dir := os.Args[2]
	var err error
	switch os.Args[1] {
	case "mixed":
		err = mixed(dir)
	case "small":
		err = small(dir)
	case "change":
		err = change(dir)
	default:
		err = fmt.Errorf("unknown data set %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// write makes a file of n incompressible bytes from seed.
func write(path string, seed uint64, n int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var key [32]byte
	key[0], key[1], key[2], key[3] = byte(seed), byte(seed>>8), byte(seed>>16), byte(seed>>24)
	key[4], key[5], key[6], key[7] = byte(seed>>32), byte(seed>>40), byte(seed>>48), byte(seed>>56)
	r := rand.NewChaCha8(key)
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		chunk := buf[:min(n, len(buf))]
		r.Read(chunk)
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return err
		}
		n -= len(chunk)
	}
	return f.Close()
}

func mixed(dir string) error {
	if err := write(filepath.Join(dir, "big.bin"), 1, 1<<30); err != nil {
		return err
	}
	for i := 0; i < 8; i++ {
		if err := write(filepath.Join(dir, "media", fmt.Sprintf("m%d.bin", i)), uint64(100+i), 64<<20); err != nil {
			return err
		}
	}
	sizes := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 9000; i++ {
		// 4 KiB to 128 KiB, more small than large.
		n := 4096 << sizes.IntN(6)
		n += sizes.IntN(n)
		path := filepath.Join(dir, "docs", fmt.Sprintf("d%02d", i/100), fmt.Sprintf("f%04d.dat", i))
		if err := write(path, uint64(1000+i), min(n, 128<<10)); err != nil {
			return err
		}
	}
	return nil
}

func small(dir string) error {
	for d := 0; d < 1000; d++ {
		for f := 0; f < 100; f++ {
			i := d*100 + f
			path := filepath.Join(dir, fmt.Sprintf("d%d", d/100), fmt.Sprintf("e%d", d), fmt.Sprintf("f%d.txt", f))
			if err := write(path, uint64(1e6+i), 100+i%3000); err != nil {
				return err
			}
		}
	}
	return nil
}

func change(dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && d.Type().IsRegular() && info.Size() < 1<<20 {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	var n, bytes int
	for i := 0; i < len(files); i += 100 {
		st, err := os.Stat(files[i])
		if err != nil {
			return err
		}
		if err := write(files[i], uint64(1e7+i), int(st.Size())); err != nil {
			return err
		}
		n++
		bytes += int(st.Size())
	}
	if f, err := os.OpenFile(filepath.Join(dir, "media", "m0.bin"), os.O_WRONLY, 0); err == nil {
		buf := make([]byte, 16<<20)
		rand.NewChaCha8([32]byte{9}).Read(buf)
		if _, err := f.WriteAt(buf, 24<<20); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		n++
		bytes += len(buf)
	}
	fmt.Printf("%d %d\n", n, bytes)
	return nil
}
