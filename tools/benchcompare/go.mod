module github.com/avxrm/rm/tools/benchcompare

go 1.26.0
