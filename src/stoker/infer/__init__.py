"""stoker.infer"""
