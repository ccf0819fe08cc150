"""stoker.launch"""
