// Command sleeper is the process of the test image: it prints
// $RM_TEST_PRINT, optionally its working directory and environment
// (RM_TEST_SHOW=1), sleeps $RM_TEST_SLEEP seconds and exits with
// $RM_TEST_EXIT. SIGTERM ends it at once with 143, as a shell would.
// With RM_TEST_CHILD_HOG=<MiB> it first runs itself as a child that takes
// that much memory and touches it (RM_TEST_HOG), waits for the child and
// says how it ended, and goes on whatever the end: a program whose helper
// process the kernel killed for memory and that exits 0 all the same.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if mib, _ := strconv.Atoi(os.Getenv("RM_TEST_HOG")); mib > 0 {
		hog(mib)
	}
	if mib := os.Getenv("RM_TEST_CHILD_HOG"); mib != "" {
		child := exec.Command(os.Args[0])
		child.Env = []string{"RM_TEST_HOG=" + mib}
		fmt.Println("child:", child.Run())
	}
	if p := os.Getenv("RM_TEST_PRINT"); p != "" {
		fmt.Println(p)
	}
	if os.Getenv("RM_TEST_SHOW") == "1" {
		wd, _ := os.Getwd()
		fmt.Println("wd=" + wd)
		env := os.Environ()
		sort.Strings(env)
		for _, e := range env {
			fmt.Println("env " + e)
		}
		fmt.Println("args", os.Args[1:])
	}
	secs, _ := strconv.ParseFloat(os.Getenv("RM_TEST_SLEEP"), 64)
	code, _ := strconv.Atoi(os.Getenv("RM_TEST_EXIT"))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-time.After(time.Duration(secs * float64(time.Second))):
		os.Exit(code)
	case s := <-sig:
		fmt.Println("got", s)
		os.Exit(128 + int(s.(syscall.Signal)))
	}
}

// hog takes mib MiB, touching every page, then waits to be killed.
func hog(mib int) {
	var held [][]byte
	for range mib {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
	}
	fmt.Println("held", len(held), "MiB")
	time.Sleep(time.Hour)
}
